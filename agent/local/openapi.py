"""The OpenAPI 3.1 description of the local read API, served at /api/v1/openapi.json."""

from __future__ import annotations

from typing import Any

from agent import __version__

PATHS = ("/api/v1/points", "/api/v1/points/{dev}/{n}", "/api/v1/devices", "/api/v1/alarms",
         "/api/v1/health", "/api/v1/openapi.json")

_ERROR = {"description": "error", "content": {"application/json": {"schema": {
    "$ref": "#/components/schemas/Error"}}}}


def _get(summary: str, schema: dict[str, Any], params: list[dict[str, Any]] | None = None,
         ) -> dict[str, Any]:
    return {"get": {
        "summary": summary, "security": [{"bearer": []}],
        "parameters": [{"$ref": "#/components/parameters/lang"}, *(params or [])],
        "responses": {"200": {"description": "ok", "content": {"application/json": {
            "schema": schema}}}, "400": _ERROR, "401": _ERROR, "404": _ERROR, "503": _ERROR}}}


def document() -> dict[str, Any]:
    point = {"type": "object", "required": ["dev", "n", "v", "u", "q", "ts", "display"],
             "properties": {
                 "dev": {"type": "string"}, "n": {"type": "string", "description": "point name"},
                 "v": {"type": ["number", "boolean", "string", "null"],
                       "description": "last value in the SenML unit `u` (null: none yet)"},
                 "u": {"type": ["string", "null"], "description": "SenML unit, as on MQTT"},
                 "q": {"enum": ["good", "uncertain", "bad", None]},
                 "ts": {"type": ["number", "null"], "description": "Unix time of the reading"},
                 "du": {"type": "string", "description": "display unit the config declares"},
                 "display": {"type": "string",
                             "description": "the value in human units, e.g. `25,000 kWh`"}}}
    with_history = {"allOf": [{"$ref": "#/components/schemas/Point"}, {
        "type": "object", "properties": {
            "bucket": {"type": "number", "description": "seconds per history bucket"},
            "history": {"type": "array", "description": "[bucket start, mean value] for the "
                        "last 288 buckets (24 h by default), oldest first; empty after a restart",
                        "items": {"type": "array", "prefixItems": [{"type": "number"},
                                                                   {"type": "number"}]}}}}]}
    path_params = [{"name": "dev", "in": "path", "required": True, "schema": {"type": "string"}},
                   {"name": "n", "in": "path", "required": True, "schema": {"type": "string"}}]
    obj = {"type": "object"}
    return {
        "openapi": "3.1.0",
        "info": {"title": "batigate local read API", "version": __version__,
                 "description": "Read-only data of one building gateway for on-site services. "
                                "Values are SenML (RFC 8428) units; `display` is for people."},
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer",
                                           "description": "the token in local.token_file"}},
            "parameters": {"lang": {"name": "lang", "in": "query", "required": False,
                                    "schema": {"enum": ["en", "fr"]},
                                    "description": "language of `display` and the page"}},
            "schemas": {
                "Point": point,
                "Error": {"type": "object", "required": ["error"], "properties": {"error": {
                    "type": "object", "properties": {"status": {"type": "integer"},
                                                     "message": {"type": "string"}}}}}}},
        "paths": {
            "/api/v1/points": _get("every point of every device, with its last value", {
                "type": "object", "properties": {"ts": {"type": "number"}, "points": {
                    "type": "array", "items": {"$ref": "#/components/schemas/Point"}}}}),
            "/api/v1/points/{dev}/{n}": _get("one point and its recent history", with_history,
                                             path_params),
            "/api/v1/devices": _get("devices: communication state and counters", {
                "type": "object", "properties": {"devices": {"type": "array", "items": obj}}}),
            "/api/v1/alarms": _get("active alarms", {
                "type": "object", "properties": {"alarms": {"type": "array", "items": obj}}}),
            "/api/v1/health": _get("gateway health: broker, outbox, clock, certificate, buses",
                                   obj),
            "/api/v1/openapi.json": {"get": {"summary": "this document (no token needed)",
                                             "responses": {"200": {"description": "ok"}}}},
        },
    }
