"""config.apply confines the paths it may set to the gateway's own directories (issue #16,
finding 9): no symlink on the way, never onto the config or a file of another kind."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path
from typing import Any

import pytest
import yaml

from agent.commands import CommandHandler
from tests.commands.conftest import config_doc, request


async def apply(handler: CommandHandler, doc: dict[str, Any]) -> dict[str, Any]:
    body = request("config.apply", {"config": yaml.safe_dump(doc, sort_keys=False)})
    answer = await handler(json.dumps(body).encode())
    assert answer is not None
    return answer


def changed(tmp_path: Path, section: str, key: str, value: Any) -> dict[str, Any]:
    doc = config_doc(tmp_path)
    if section == "mqtt.tls":
        doc["mqtt"]["tls"] = {key: str(value)}
    elif section == "commands":  # a key replaces the lab's unsigned: allow
        doc["commands"] = {key: str(value)}
    else:
        doc.setdefault(section, {})[key] = str(value)
    return doc


@pytest.mark.parametrize(("section", "key", "target", "words"), [
    ("control", "socket", "{tmp}/gateway.yaml.prev", "side files"),
    ("control", "socket", "{tmp}/outbox.db", "is also buffer.path"),
    ("buffer", "path", "/etc/batigate-elsewhere/outbox.db", "outside the gateway's directories"),
    ("buffer", "path", "{tmp}/../outbox.db", "not a plain path"),
    ("buffer", "path", "outbox.db", "not absolute"),
    ("buffer", "path", "{tmp}/linked/outbox.db", "symbolic link"),
    ("buffer", "path", "{tmp}/notes.txt", "not an SQLite file"),
    ("update", "releases", "{tmp}/notes.txt", "not a directory"),
    ("commands", "public_key", "{tmp}/outbox.db", "not an Ed25519 public key"),
    ("commands", "public_key", "{tmp}/missing.pub", "does not exist"),
    ("mqtt.tls", "ca", "{tmp}/notes.txt", "not a PEM file"),
    ("control", "socket", "{tmp}/notes.txt", "not a socket"),
])
async def test_a_remote_apply_cannot_aim_a_path_outside_or_onto_the_wrong_file(
        handler_agent: Any, tmp_path: Path, section: str, key: str, target: str,
        words: str) -> None:
    handler, agent = handler_agent
    (tmp_path / "gateway.yaml.prev").write_text("gateway: {}\n")
    (tmp_path / "notes.txt").write_text("not what the key expects\n")
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "linked").symlink_to(tmp_path / "elsewhere")
    if section == "mqtt.tls":
        (tmp_path / "ca.pem").write_text("-----BEGIN CERTIFICATE-----\n")
    before = (tmp_path / "gateway.yaml").read_bytes()
    answer = await apply(handler, changed(tmp_path, section, key,
                                          target.replace("{tmp}", str(tmp_path))))
    assert (answer["status"], answer["code"]) == ("rejected", 422), answer
    assert words in answer["error"], answer["error"]
    assert (tmp_path / "gateway.yaml").read_bytes() == before  # nothing staged
    assert (tmp_path / "gateway.yaml.prev").read_text() == "gateway: {}\n"
    assert not agent.restart_requested.is_set()


async def test_a_path_inside_the_gateway_directories_is_accepted(
        handler_agent: Any, tmp_path: Path) -> None:
    handler, _ = handler_agent
    (tmp_path / "data").mkdir()
    answer = await apply(handler, changed(tmp_path, "buffer", "path",
                                          tmp_path / "data" / "outbox.db"))
    assert (answer["status"], answer["code"]) == ("in_progress", 202), answer


async def test_the_control_socket_never_removes_a_file_that_is_not_a_socket(
        tmp_path: Path) -> None:
    """Defence in depth for local configs: at start, the stale socket is removed only when it
    is a socket."""
    from agent.runtime import control  # noqa: PLC0415

    precious = tmp_path / "gateway.yaml.prev"
    precious.write_text("previous config\n")
    with pytest.raises(control.ControlError, match="not a socket"):
        await control.start(None, precious)
    assert precious.read_text() == "previous config\n"
    stale = tmp_path / "stale.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(str(stale))
    sock.close()  # a killed agent's leftover: bound, nobody listening
    listener = await control.start(None, stale)  # the stale socket file is replaced
    listener.close()
    assert os.path.exists(stale)
