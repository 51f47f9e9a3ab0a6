"""Signed commands: Ed25519 over the canonical JSON of the request without `sig`."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import cbor2
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from agent.commands import signing

from agent.runtime import supervisor
from agent.commands import CommandHandler, CommandsConfig
from tests.commands.conftest import GATEWAY, request


def signed(key: Ed25519PrivateKey, op: str, args: dict[str, Any] | None = None,
           **extra: Any) -> dict[str, Any]:
    return signing.sign(request(op, args, aud=GATEWAY, by="ops", **extra), key)


async def send(handler: CommandHandler, body: dict[str, Any]) -> dict[str, Any]:
    answer = await handler(json.dumps(body).encode())
    assert answer is not None
    return answer


@pytest.fixture
def handler(agent: supervisor.Agent, private_key: Ed25519PrivateKey) -> CommandHandler:
    return CommandHandler(agent, public_key=private_key.public_key())


def test_canonical_form_ignores_key_order_and_sig() -> None:
    a = {"op": "ping", "id": "1", "args": {"b": 1, "a": "é"}, "exp": 5, "sig": "x"}
    b = {"exp": 5, "args": {"a": "é", "b": 1}, "id": "1", "op": "ping"}
    assert signing.canonical(a) == signing.canonical(b)
    assert signing.canonical(a) == '{"args":{"a":"é","b":1},"exp":5,"id":"1","op":"ping"}'.encode()


async def test_a_good_signature_is_accepted_and_audited_as_signed(
        handler: CommandHandler, private_key: Ed25519PrivateKey) -> None:
    body = signed(private_key, "ping")
    answer = await send(handler, body)
    assert answer["status"] == "succeeded", answer
    assert handler.audit.recent(1)[0]["signed"] is True


async def test_cbor_requests_are_verified_on_the_same_canonical_json(
        handler: CommandHandler, private_key: Ed25519PrivateKey) -> None:
    answer = await handler(cbor2.dumps(signed(private_key, "ping")))
    assert answer is not None and answer["status"] == "succeeded"


@pytest.mark.parametrize("tamper", ["unsigned", "garbage", "short", "other_key", "changed_args",
                                    "no_aud", "other_aud"])
async def test_bad_signatures_are_rejected_401(handler: CommandHandler,
                                               private_key: Ed25519PrivateKey,
                                               tamper: str) -> None:
    body = signed(private_key, "point.read", {"dev": "vmc-a", "n": "fan_speed"})
    if tamper == "unsigned":
        del body["sig"]
    elif tamper == "garbage":
        body["sig"] = "not base64 at all!"
    elif tamper == "short":
        body["sig"] = base64.b64encode(b"x" * 10).decode()
    elif tamper == "other_key":
        body = signing.sign(body, Ed25519PrivateKey.generate())
    elif tamper == "changed_args":
        body["args"] = {"dev": "vmc-a", "n": "exhaust_pressure"}
    elif tamper == "no_aud":
        body.pop("aud")
        body = signing.sign(body, private_key)
    elif tamper == "other_aud":
        body = signing.sign(dict(body, aud="gw-other"), private_key)
    answer = await send(handler, body)
    assert (answer["status"], answer["code"]) == ("rejected", 401), answer
    assert answer["id"] == body["id"] and answer["error"]


async def test_an_unsigned_message_cannot_squat_the_id_of_a_signed_one(
        handler: CommandHandler, private_key: Ed25519PrivateKey) -> None:
    real = signed(private_key, "ping")
    squat = {k: v for k, v in real.items() if k != "sig"}
    assert (await send(handler, squat))["code"] == 401
    assert (await send(handler, real))["status"] == "succeeded"


async def test_with_require_signature_writes_only_changes_need_a_signature(
        agent: supervisor.Agent, private_key: Ed25519PrivateKey) -> None:
    handler = CommandHandler(agent, public_key=private_key.public_key(),
                             settings=CommandsConfig(require_signature="writes"))
    assert (await send(handler, request("ping")))["status"] == "succeeded"
    for op, args in (("point.write", {"dev": "vmc-a", "n": "fan_enable", "v": True}),
                     ("config.apply", {"config": "gateway: {}"})):
        answer = await send(handler, request(op, args))
        assert answer["code"] == 401, (op, answer)
    # a signature that is present is checked even where it is optional
    forged = dict(request("ping"), sig=base64.b64encode(b"\0" * 64).decode())
    assert (await send(handler, forged))["code"] == 401


def test_public_keys_load_from_pem_or_raw_base64(tmp_path: Path,
                                                 private_key: Ed25519PrivateKey) -> None:
    pem = tmp_path / "cmd.pub"
    pem.write_bytes(signing.public_pem(private_key))
    raw = tmp_path / "cmd.b64"
    raw.write_text(base64.b64encode(private_key.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw)).decode() + "\n")
    body = signing.sign({"id": "1", "op": "ping", "exp": 1}, private_key)
    for path in (pem, raw):
        signing.verify(body, signing.load_public_key(path))
    (tmp_path / "bad").write_text("hello")
    with pytest.raises(ValueError, match="neither PEM nor base64"):
        signing.load_public_key(tmp_path / "bad")


async def test_the_key_path_can_come_from_the_commands_settings(
        agent: supervisor.Agent, private_key: Ed25519PrivateKey, tmp_path: Path) -> None:
    (tmp_path / "cmd.pub").write_bytes(signing.public_pem(private_key))
    handler = CommandHandler(agent, settings=CommandsConfig(public_key=tmp_path / "cmd.pub"))
    assert (await send(handler, request("ping")))["code"] == 401
    assert (await send(handler, signed(private_key, "ping")))["status"] == "succeeded"
