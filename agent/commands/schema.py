"""The JSON Schema of `cmd/req`, generated from the models the handler really uses.

`python -m agent.commands.schema > asyncapi/schemas/cmd-req.json` refreshes the published file;
a test fails when the file and the code disagree, so the document cannot drift from the handler.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from agent.commands.models import Request
from agent.commands.catalog import OPERATIONS

SCHEMA_BASE = "https://batigate.invalid/schemas/"  # `.invalid`: an identifier, not a download


def _clean(schema: Any) -> Any:
    """Drop pydantic's generated titles: they say nothing the property name does not."""
    if isinstance(schema, dict):
        return {k: _clean(v) for k, v in schema.items() if k != "title" or not isinstance(v, str)}
    if isinstance(schema, list):
        return [_clean(v) for v in schema]
    return schema


def request_schema() -> dict[str, Any]:
    envelope = _clean(Request.model_json_schema())
    envelope["properties"]["op"] = {"enum": sorted(OPERATIONS), "type": "string"}
    branches = []
    for name in sorted(OPERATIONS):
        operation = OPERATIONS[name]
        args = _clean(operation.args.model_json_schema())
        if operation.run.__doc__:
            args["description"] = " ".join(operation.run.__doc__.split())
        branches.append({"if": {"properties": {"op": {"const": name}}, "required": ["op"]},
                         "then": {"properties": {"args": args}}})
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": SCHEMA_BASE + "cmd-req.json",
        "title": "Command request (cmd/req)",
        "description": "JSON or CBOR. When the gateway has a command key, `sig` is the base64 "
                       "Ed25519 signature of the canonical JSON of the request without `sig` "
                       "(sorted keys, no spaces, UTF-8) and `aud` must be the gateway id.",
        **envelope,
        "allOf": branches,
    }


def main() -> None:
    sys.stdout.write(json.dumps(request_schema(), indent=2, sort_keys=False) + "\n")


if __name__ == "__main__":
    main()
