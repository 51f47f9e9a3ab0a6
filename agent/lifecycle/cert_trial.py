"""A rotated client certificate on probation: if the agent cannot reach the broker with it in
time, the previous pair comes back by itself.

`cert.install` proves the new pair with a probe connection before installing it, but the probe is
not the agent's own session (another client id, MQTT 3.1.1): a broker that binds the client id to
the certificate, or a revocation list updated meanwhile, can still refuse the real connection. A
gateway that cannot connect cannot be sent `cert.rollback` either, so the rollback must not need
the broker:

    <cert>.trial    the install on probation: command, serial, deadline
    <cert>.outcome  how it ended, until a connected agent has reported it

- `check_at_start` (called by `batigate run` once the config is read): past the deadline, the
  previous pair is put back before the uplink ever tries the new one again.
- `agent.commands.ops.cert.watch`, in the running agent: once connected with the new pair the trial is
  confirmed; at the deadline it is rolled back and the agent restarts on the previous pair.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from agent.sdk.durable import read_note, write_atomic
from agent.i18n import t
from provisioning import certs

log = logging.getLogger(__name__)

TRIAL_WITHIN = 600.0  # seconds for the restarted agent to reach the broker with the new pair


@dataclass(frozen=True, slots=True)
class Trial:
    cmd_id: str
    serial: str  # hex serial of the certificate on trial
    deadline: float  # epoch seconds
    by: str | None = None


def _side(cert_path: Path, suffix: str) -> Path:
    return cert_path.with_name(cert_path.name + suffix)


def begin(cert_path: Path, trial: Trial) -> None:
    write_atomic(_side(cert_path, ".trial"), json.dumps(asdict(trial)).encode())


def pending(cert_path: Path) -> Trial | None:
    try:
        return Trial(**json.loads(_side(cert_path, ".trial").read_bytes()))
    except FileNotFoundError:
        return None
    except (OSError, ValueError, TypeError) as exc:
        # Half-understood: the safe reading is "on trial, deadline passed".
        log.error("unreadable %s (%s): treated as a failed trial", _side(cert_path, ".trial"), exc)
        return Trial(cmd_id="unknown", serial="0", deadline=0.0)


def confirm(cert_path: Path, *, now: float) -> Trial | None:
    """The agent reached the broker with the new pair: it stays."""
    trial = pending(cert_path)
    if trial is not None:
        _record(cert_path, trial, "cert.confirmed", None, now)
        _side(cert_path, ".trial").unlink(missing_ok=True)
    return trial


def rollback(cert_path: Path, key_path: Path, *, reason: str, now: float) -> Trial | None:
    """The previous pair back in place; the agent must then restart to use it."""
    trial = pending(cert_path)
    if trial is None:
        return None
    if not certs.rollback(cert_path, key_path):
        log.error("certificate %s on trial failed, and there is no previous pair to go back to",
                  trial.serial)
    _record(cert_path, trial, "cert.rolled_back", reason, now)
    _side(cert_path, ".trial").unlink(missing_ok=True)
    log.warning("client certificate %s rolled back: %s", trial.serial, reason)
    return trial


def _record(cert_path: Path, trial: Trial, kind: str, reason: str | None, now: float) -> None:
    body: dict[str, Any] = {"type": kind, "cmd": trial.cmd_id, "serial": trial.serial,
                            "ts": round(now, 3)}
    if reason:
        body["reason"] = reason
    write_atomic(_side(cert_path, ".outcome"), json.dumps(body).encode())


def take_outcome(cert_path: Path) -> dict[str, Any] | None:
    """The outcome not reported yet; the caller reports it, then calls `forget_outcome`."""
    return read_note(_side(cert_path, ".outcome"))


def forget_outcome(cert_path: Path) -> None:
    _side(cert_path, ".outcome").unlink(missing_ok=True)


def check_at_start(cert_path: Path, key_path: Path, *, now: float) -> str | None:
    """Roll back a trial whose deadline has passed; a line for the log when it acted."""
    trial = pending(cert_path)
    if trial is None or now < trial.deadline:
        return None
    rollback(cert_path, key_path, reason="no broker connection in time (found at start)", now=now)
    return t("run.cert_rolled_back", serial=trial.serial, cmd=trial.cmd_id)
