"""The backend's watermark on `{root}/ack` (`buffer.release: backend`): which ones may release
outbox rows.

A watermark deletes data, so whoever can publish on the ack topic could make a gateway drop its
undelivered backlog. A watermark is taken only when it is plausible:

- never from a retained message: a retained ack predates this session (the broker replays it at
  every subscription), so it says nothing about what this process sent;
- never beyond the highest seq this process has published (a backend cannot have stored what was
  never sent); and the outbox releases only rows this process published (`Outbox.release_upto`);
- with a command key (`commands.public_key`), only signed: `{"seq": N, "aud": GATEWAY,
  "exp": EPOCH, "sig": BASE64}`, Ed25519 over the canonical JSON without `sig`, exactly as
  commands are signed (agent/commands/signing.py), with the same key and clock skew.

Every refusal is counted (health: `mqtt.acks_refused`) and logged: the first of each reason at
warning, the rest at debug, so a flood cannot fill the journal.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from agent.commands import signing

log = logging.getLogger(__name__)

MAX_ACK_BYTES = 4096


class WatermarkGate:
    def __init__(self, gateway: str, key: Ed25519PublicKey | None, *,
                 clock: Callable[[], float], skew: float = 60.0) -> None:
        self.gateway = gateway
        self.key = key
        self.clock = clock
        self.skew = skew
        self.accepted = 0
        self.refused = 0
        self._said: set[str] = set()

    def judge(self, payload: bytes, *, retained: bool, highest_published: int) -> int | None:
        """The seq to release up to, or None (counted and logged) when the ack is refused."""
        seq, why = self._check(payload, retained, highest_published)
        if seq is None:
            self.refused += 1
            kind = why.split(":", 1)[0]
            level = logging.DEBUG if kind in self._said else logging.WARNING
            self._said.add(kind)
            log.log(level, "ack refused (%d so far): %s", self.refused, why)
            return None
        self.accepted += 1
        return seq

    def _check(self, payload: bytes, retained: bool, highest: int) -> tuple[int | None, str]:
        if retained:
            return None, "retained: a retained ack predates this session"
        if len(payload) > MAX_ACK_BYTES:
            return None, f"too large: {len(payload)} bytes"
        try:
            doc = json.loads(payload)
        except (ValueError, UnicodeDecodeError, RecursionError):
            return None, "malformed: not JSON"
        seq = doc.get("seq") if isinstance(doc, dict) else None
        if not isinstance(seq, int) or isinstance(seq, bool) or seq <= 0:
            return None, "malformed: seq must be a positive integer"
        if self.key is not None:
            problem = self._signature(doc)
            if problem is not None:
                return None, problem
        if seq > highest:
            return None, (f"implausible: seq {seq} is beyond the highest seq this agent has "
                          f"published ({highest})")
        return seq, ""

    def _signature(self, doc: dict[str, Any]) -> str | None:
        try:
            signing.verify(doc, self.key)  # type: ignore[arg-type]
        except signing.SignatureError as exc:
            return f"unsigned or badly signed: {exc}"
        if doc.get("aud") != self.gateway:
            return "unsigned or badly signed: aud must name this gateway"
        exp = doc.get("exp")
        if not isinstance(exp, int | float) or isinstance(exp, bool) or not math.isfinite(exp):
            return "unsigned or badly signed: exp (epoch seconds) is required"
        if exp + self.skew < self.clock():
            return "expired: a signed ack past its exp"
        return None
