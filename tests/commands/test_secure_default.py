"""The command modes and the records that protect them (issue #16, findings 1 and 2), on a
handler built from a real config (the attacks through mosquitto are in
tests/integration/test_command_security.py)."""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from agent.config import loader as config_mod
from agent.commands import signing
from agent.runtime import supervisor
from agent.sdk.clock import SystemClock
from agent.commands import CommandHandler, store
from agent.commands.catalog import OPERATIONS
from agent.commands.registry import HARMLESS
from agent.sdk.errors import ConfigError
from tests.commands.conftest import GATEWAY, config_doc, request, write


async def send(handler: CommandHandler, body: dict[str, Any]) -> dict[str, Any]:
    answer = await handler(json.dumps(body).encode())
    assert answer is not None
    return answer


def built(tmp_path: Path, commands: dict[str, Any]) -> supervisor.Agent:
    return supervisor.Agent(config_mod.load(write(tmp_path, config_doc(tmp_path,
                                                                       commands=commands))),
                            SystemClock())


@pytest.mark.parametrize(("commands", "mode"), [
    ({}, "unsigned-readonly"), ({"unsigned": "allow"}, "unsigned-allow"),
    ({"public_key": "KEY"}, "signed"),
    ({"public_key": "KEY", "require_signature": "writes"}, "signed-writes")])
def test_every_config_says_its_command_mode(tmp_path: Path, commands: dict[str, Any],
                                            mode: str) -> None:
    key = tmp_path / "ops.pub"
    key.write_bytes(signing.public_pem(Ed25519PrivateKey.generate()))
    if "public_key" in commands:
        commands = {**commands, "public_key": str(key)}
    agent = built(tmp_path, commands)
    try:
        assert agent.commands.auth == agent.config.commands.auth == mode
        assert agent.birth()["command_auth"] == agent.health()["command_auth"] == mode
    finally:
        agent.outbox.close()


def test_a_key_and_unsigned_allow_together_are_a_config_error(tmp_path: Path) -> None:
    doc = config_doc(tmp_path, commands={"public_key": "/etc/batigate/ops.pub",
                                         "unsigned": "allow"})
    with pytest.raises(ConfigError, match="contradict"):
        config_mod.load(write(tmp_path, doc))


async def test_without_a_key_only_the_harmless_operations_run(tmp_path: Path) -> None:
    agent = built(tmp_path, {})
    try:
        handler = agent.commands
        for name in sorted(OPERATIONS):
            answer = await send(handler, request(name))
            if name in HARMLESS:
                assert answer["code"] != 401, answer  # it ran (and may fail for other reasons)
            else:
                assert (answer["status"], answer["code"]) == ("rejected", 401), answer
                assert "refused unsigned" in answer["error"]
    finally:
        agent.outbox.close()
    assert {"ping", "rebirth", "health", "point.read", "buffer.stats"} <= HARMLESS
    assert not {"config.get", "log.get", "audit.get", "point.write"} & HARMLESS


async def test_a_flood_of_refused_commands_does_not_push_the_signed_one_out_of_the_audit(
        tmp_path: Path, private_key: Ed25519PrivateKey) -> None:
    agent = built(tmp_path, {})
    try:
        handler = CommandHandler(agent, public_key=private_key.public_key())
        ping = signing.sign(request("ping", aud=GATEWAY, by="ops"), private_key)
        assert (await send(handler, ping))["status"] == "succeeded"
        started = time.monotonic()
        for n in range(10_001):
            await send(handler, request("config.get", by=f"stranger-{n}"))
        flood_s = time.monotonic() - started
        trail = await send(handler, signing.sign(request("audit.get", {"noise": False},
                                                         aud=GATEWAY), private_key))
        assert ping["id"] in {e["id"] for e in trail["result"]["entries"]}
        assert trail["result"]["noise"] >= 10_001
        rows = sqlite3.connect(agent.config.buffer.path).execute(
            "SELECT COUNT(*) FROM cmd_audit").fetchone()[0]
        assert rows <= 3  # the flood cost no disk write
        print(f"10,001 refused commands in {flood_s:.1f}s")
    finally:
        agent.outbox.close()


async def test_a_full_replay_record_refuses_rather_than_forgets(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, private_key: Ed25519PrivateKey) -> None:
    monkeypatch.setattr(store, "MAX_PROTECTED", 3)
    agent = built(tmp_path, {})
    try:
        handler = CommandHandler(agent, public_key=private_key.public_key())
        bodies = [signing.sign(request("ping", aud=GATEWAY), private_key) for _ in range(4)]
        answers = [await send(handler, body) for body in bodies]
        assert [a["code"] for a in answers] == [200, 200, 200, 503], answers
        again = await send(handler, bodies[0])
        assert again["replayed"] is True  # the first ones are still on record
    finally:
        agent.outbox.close()


async def test_a_command_that_raised_is_recorded_failed_and_a_replay_gets_that_answer(
        tmp_path: Path) -> None:
    agent = built(tmp_path, {})
    try:
        agent.outbox.stats = None  # type: ignore[assignment]  # buffer.stats now raises
        body = request("buffer.stats")
        first = await send(agent.commands, body)
        assert (first["status"], first["code"]) == ("failed", 500)
        again = await send(agent.commands, body)
        assert again["replayed"] is True and again["code"] == 500  # not "being carried out"
    finally:
        agent.outbox.close()


def test_config_check_says_the_mode_and_warns_about_a_lab_setting(tmp_path: Path) -> None:
    from click.testing import CliRunner  # noqa: PLC0415

    from agent.cli.main import main  # noqa: PLC0415

    lab = write(tmp_path, config_doc(tmp_path))  # commands.unsigned: allow
    result = CliRunner().invoke(main, ["config", "check", str(lab)])
    assert result.exit_code == 0, result.output
    assert "command auth unsigned-allow" in result.output and "labs only" in result.output
    plain = write(tmp_path, config_doc(tmp_path, commands={}))
    result = CliRunner().invoke(main, ["config", "check", str(plain)])
    assert "command auth unsigned-readonly" in result.output
