"""Secrets out: the effective config with secrets masked (`config show`, `config.get`, logs), and
URLs without their credentials (audit, answers, logs)."""

from __future__ import annotations

import re
from dataclasses import fields
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from pydantic import BaseModel

from agent.config.loader import Config

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


# -- URLs: credentials out before anything is stored, audited, logged or answered --------------

_URL = re.compile(r"\b[A-Za-z][A-Za-z0-9+.-]{1,15}://[^\s\"'<>]+")


def url(text: str) -> str:
    """`text` with every URL's user:password@ replaced by `***@` and every query value by
    `***` (pre-signed URLs carry their token there); the fragment goes too."""
    return _URL.sub(lambda m: _one_url(m.group(0)), text)


def _one_url(raw: str) -> str:
    try:
        parts = urlsplit(raw)
        netloc = parts.netloc
    except ValueError:  # an unparsable URL: keep only its scheme
        return raw.split("://", 1)[0] + "://***"
    if "@" in netloc:
        netloc = MASK + "@" + netloc.rsplit("@", 1)[1]
    query = "&".join(f"{pair.partition('=')[0]}={MASK}" if pair else ""
                     for pair in parts.query.split("&")) if parts.query else ""
    return urlunsplit((parts.scheme, netloc, parts.path, query, ""))


def urls(value: Any) -> Any:
    """`url` applied to every text inside `value` (dicts, lists), keys included."""
    if isinstance(value, str):
        return url(value) if "://" in value else value
    if isinstance(value, dict):
        return {urls(k): urls(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [urls(v) for v in value]
    return value
