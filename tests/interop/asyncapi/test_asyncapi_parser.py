"""The AsyncAPI Initiative's own parser (npm @asyncapi/parser) reads asyncapi/asyncapi.yaml.

Issue #15: the schemas use JSON Schema 2020-12 keywords (prefixItems, unevaluatedProperties,
dependentRequired), but without `schemaFormat` AsyncAPI tools take a payload as an AsyncAPI
Schema (a draft-07 superset) and ignore those keywords. The parser must report no error and
see every payload as JSON Schema 2020-12, and the telemetry message as application/json.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.interop.node import install

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[2]
PARSER = REPO / "build" / "interop" / "asyncapi-parser"
ERROR = 0  # the parser's DiagnosticSeverity.Error


@pytest.fixture(scope="module")
def parsed() -> dict[str, object]:
    install(HERE / "install-asyncapi-parser.sh", "the AsyncAPI parser test")
    run = subprocess.run(["node", str(HERE / "parse.js"), str(PARSER),
                          str(REPO / "asyncapi" / "asyncapi.yaml")],
                         capture_output=True, text=True, timeout=120, check=False)
    assert run.returncode == 0, run.stderr
    return json.loads(run.stdout)


def test_the_parser_finds_no_error(parsed: dict) -> None:
    errors = [d for d in parsed["diagnostics"] if d["severity"] == ERROR]
    assert errors == []


def test_every_payload_is_read_as_json_schema_2020_12(parsed: dict) -> None:
    messages = parsed["messages"]
    assert set(messages) >= {"state", "birth", "deviceState", "telemetry", "event", "alarms",
                             "health", "command", "commandResult", "ack"}
    formats = {m["schemaFormat"] for m in messages.values()}
    assert formats == {"application/schema+json;version=2020-12"}


def test_telemetry_is_labelled_as_the_json_object_it_is(parsed: dict) -> None:
    assert parsed["messages"]["telemetry"]["contentType"] == "application/json"
