"""The effective config with secrets masked: for `config show`, `config.get` and logs."""

from __future__ import annotations

from dataclasses import fields
from typing import Any

from pydantic import BaseModel

from agent.config import Config

MASK = "***"
SECRET_KEYS = frozenset({"password", "key_password", "token", "secret"})


def effective(config: Config) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for field in fields(config):
        value = getattr(config, field.name)
        out[field.name] = _plain(value)
    return _mask(out)


def _plain(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json", by_alias=True)
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value if isinstance(value, int | float | str | bool | type(None)) else str(value)


def _mask(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: (MASK if k in SECRET_KEYS and v is not None else _mask(v))
                for k, v in value.items()}
    if isinstance(value, list):
        return [_mask(v) for v in value]
    return value
