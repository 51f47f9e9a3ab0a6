"""Where a remote `config.apply` may point the gateway's files (issue #16, finding 9).

A config sent over MQTT could otherwise aim the outbox, the control socket (whose stale file the
agent removes at start), the TLS files (which certificate rotation rewrites) or the release folder
at any file the agent can write: `control.socket: /etc/batigate/gateway.yaml.prev` once removed
the previous config and with it every rollback. So every path of the new config that differs
from the running one must:

- be absolute and plain (no `.` or `..` component);
- lie inside one of the gateway's own directories, taken from the running config and the
  defaults: the configuration directory (the config file's), the state directories (the
  outbox's, the releases'), the runtime directory (the control socket's);
- reach there without a symbolic link below that directory (the directories themselves may be
  links: images mount the data partition there);
- not be the config file or one of its side files, nor the target of another path key;
- when something exists there already, be of the kind the key expects (an SQLite file for
  `buffer.path`, a socket for `control.socket`, PEM for the TLS files, a public key, a directory
  for `update.releases`).

A config file written locally (`batigate init`, an editor, the image) is not limited: this
applies to what arrives by command only.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from dataclasses import fields
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from agent.commands import signing
from agent.config.models import BufferConfig, ControlConfig, UpdateConfig

SIDE_FILES = ("", ".prev", ".pending", ".outcome", ".rejected")
SQLITE_MAGIC = b"SQLite format 3\x00"
MAX_KEY_BYTES = 16384
KINDS = {"buffer.path": "sqlite", "control.socket": "socket", "mqtt.tls.ca": "pem",
         "mqtt.tls.cert": "pem", "mqtt.tls.key": "pem", "commands.public_key": "public key",
         "update.public_key": "public key", "update.releases": "directory"}


def path_keys(config: Any) -> Iterator[tuple[str, Path]]:
    """Every Path value of a Config, by dotted key (any section, so a new key is covered)."""
    for field in fields(config):
        yield from _walk(field.name, getattr(config, field.name))


def _walk(prefix: str, value: Any) -> Iterator[tuple[str, Path]]:
    if isinstance(value, Path):
        yield prefix, value
    elif isinstance(value, BaseModel):
        for name in type(value).model_fields:
            yield from _walk(f"{prefix}.{name}", getattr(value, name))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _walk(f"{prefix}[{index}]", item)


def gateway_dirs(running: Any) -> list[Path]:
    """The configuration, state and runtime directories, from the running config and defaults."""
    dirs = [running.source.parent, running.buffer.path.parent, running.update.releases,
            running.control.socket.parent, BufferConfig().path.parent,
            UpdateConfig().releases, ControlConfig().socket.parent]
    out: list[Path] = []
    for item in dirs:
        plain = Path(os.path.normpath(os.path.abspath(item)))
        if plain not in out:
            out.append(plain)
    return out


def confine(new: Any, running: Any) -> list[str]:
    """The reasons `new`'s paths are refused for a remote apply (empty: all fine)."""
    before = dict(path_keys(running))
    roots = gateway_dirs(running)
    own = {Path(os.path.normpath(os.path.abspath(running.source))).with_name(
        running.source.name + suffix) for suffix in SIDE_FILES}
    problems: list[str] = []
    seen: dict[Path, str] = {}
    for key, value in path_keys(new):
        plain = Path(os.path.normpath(value)) if value.is_absolute() else None
        if plain is not None:
            if plain in seen:
                problems.append(f"{key}: {value} is also {seen[plain]}")
            seen[plain] = key
        if before.get(key) == value:
            continue  # what runs already is not a new exposure
        why = _refusal(key, value, plain, roots, own)
        if why:
            problems.append(f"{key}: {why}")
    return problems


def _refusal(key: str, value: Path, plain: Path | None, roots: list[Path],
             own: set[Path]) -> str | None:
    if plain is None:
        return f"{value} is not absolute"
    if str(plain) != str(value).rstrip("/") or any(p in (".", "..") for p in value.parts):
        return f"{value} is not a plain path (no '.' or '..')"
    if plain in own:
        return f"{value} is the config file or one of its side files"
    root = next((r for r in roots if r in plain.parents), None)
    if root is None:
        allowed = ", ".join(str(r) for r in roots)
        return (f"{value} is outside the gateway's directories ({allowed}); only a local "
                "config file may point elsewhere")
    step = root
    for part in plain.relative_to(root).parts:
        step = step / part
        if step.is_symlink():
            return f"{value} goes through the symbolic link {step}"
    kind = KINDS.get(key, "file")
    if os.path.lexists(plain):
        return _wrong_kind(kind, plain)
    if kind == "public key":  # the agent could not even start without it
        return f"{value} does not exist"
    return None


def _wrong_kind(kind: str, path: Path) -> str | None:
    mode = os.lstat(path).st_mode
    if kind == "socket":
        return None if stat.S_ISSOCK(mode) else f"{path} exists and is not a socket"
    if kind == "directory":
        return None if stat.S_ISDIR(mode) else f"{path} exists and is not a directory"
    if not stat.S_ISREG(mode):
        return f"{path} exists and is not a regular file"
    with open(path, "rb") as file:
        head = file.read(64)
    if kind == "sqlite" and head and not head.startswith(SQLITE_MAGIC):
        return f"{path} exists and is not an SQLite file"
    if kind == "pem" and not head.lstrip().startswith(b"-----BEGIN"):
        return f"{path} exists and is not a PEM file"
    if kind == "public key":
        if os.lstat(path).st_size > MAX_KEY_BYTES:
            return f"{path} is too large for a public key"
        try:
            signing.load_public_key(path)
        except (OSError, ValueError) as exc:
            return f"{path} is not an Ed25519 public key: {exc}"
    return None
