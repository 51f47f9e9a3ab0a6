"""WatermarkGate: which `{root}/ack` messages may release outbox rows (issue #16, finding 3)."""

from __future__ import annotations

import json
import time

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from agent.commands import signing
from agent.uplink.watermark import WatermarkGate


def ack(body: dict) -> bytes:
    return json.dumps(body).encode()


def test_without_a_key_retained_and_implausible_acks_are_refused_and_counted() -> None:
    gate = WatermarkGate("gw-1", None, clock=time.time)
    assert gate.judge(ack({"seq": 5}), retained=True, highest_published=10) is None
    assert gate.judge(ack({"seq": 11}), retained=False, highest_published=10) is None
    assert gate.judge(b"{", retained=False, highest_published=10) is None
    assert gate.judge(ack({"seq": 1.0}), retained=False, highest_published=10) is None
    assert gate.judge(ack({"seq": 10}), retained=False, highest_published=10) == 10
    assert (gate.refused, gate.accepted) == (4, 1)


def test_with_a_command_key_only_signed_acks_for_this_gateway_count() -> None:
    key = Ed25519PrivateKey.generate()
    gate = WatermarkGate("gw-1", key.public_key(), clock=time.time)
    body = {"seq": 7, "aud": "gw-1", "exp": int(time.time()) + 60}
    assert gate.judge(ack(body), retained=False, highest_published=10) is None  # unsigned
    assert gate.judge(ack(signing.sign(body, key)), retained=False, highest_published=10) == 7
    other = signing.sign({**body, "aud": "gw-2"}, key)
    assert gate.judge(ack(other), retained=False, highest_published=10) is None
    stale = signing.sign({**body, "exp": int(time.time()) - 3600}, key)
    assert gate.judge(ack(stale), retained=False, highest_published=10) is None
    stranger = signing.sign(body, Ed25519PrivateKey.generate())
    assert gate.judge(ack(stranger), retained=False, highest_published=10) is None
    beyond = signing.sign({**body, "seq": 11}, key)
    assert gate.judge(ack(beyond), retained=False, highest_published=10) is None
    assert gate.accepted == 1 and gate.refused == 5
