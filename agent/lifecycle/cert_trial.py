"""A rotated client certificate on probation, the certificate policy of the trial machine
(`trial.py`): if the agent cannot reach the broker with it in time, the previous pair comes back
by itself.

`cert.install` proves the new pair with a probe connection before installing it, but the probe is
not the agent's own session (another client id, MQTT 3.1.1): a broker that binds the client id to
the certificate, or a revocation list updated meanwhile, can still refuse the real connection. A
gateway that cannot connect cannot be sent `cert.rollback` either, so the rollback must not need
the broker:

    <cert>.trial    the install on probation: command, serial, deadline
    <cert>.outcome  how it ended, until a connected agent has reported it

- `check_at_start` (called by `batigate run` once the config is read): past the deadline, the
  previous pair is put back before the uplink ever tries the new one again.
- the trial watcher (`trial_watch.py`), in the running agent: once connected with the new pair
  the trial is committed; at the deadline it is rolled back and the agent restarts on the
  previous pair.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agent.i18n import t
from agent.lifecycle.trial import Trial, Words
from agent.runtime.restart import request_restart
from provisioning import certs

if TYPE_CHECKING:
    from agent.runtime.context import AgentContext

log = logging.getLogger(__name__)

TRIAL_WITHIN = 600.0  # seconds for the restarted agent to reach the broker with the new pair


@dataclass(frozen=True, slots=True)
class Installed:
    cmd_id: str
    serial: str  # hex serial of the certificate on trial
    deadline: float  # epoch seconds
    by: str | None = None


def _side(cert_path: Path, suffix: str) -> Path:
    return cert_path.with_name(cert_path.name + suffix)


class CertTrial(Trial[Installed, "AgentContext"]):
    kind = "cert"
    record_type = Installed
    words = Words("cert.install", "cert.confirmed", "cert.rolled_back",
                  start_reason="no broker connection in time (found at start)",
                  deadline_reason="no broker connection with the new certificate in time")
    commit_on_connect = True

    def __init__(self, cert_path: Path, key_path: Path) -> None:
        super().__init__(_side(cert_path, ".trial"), _side(cert_path, ".outcome"))
        self.cert_path = cert_path
        self.key_path = key_path

    def unreadable(self, exc: Exception) -> Installed | None:
        # Half-understood: the safe reading is "on trial, deadline passed".
        log.error("unreadable %s (%s): treated as a failed trial", self.record_path, exc)
        return Installed(cmd_id="unknown", serial="0", deadline=0.0)

    def restore(self, record: Installed | None) -> None:
        if not certs.rollback(self.cert_path, self.key_path):
            log.error("certificate %s on trial failed, and there is no previous pair to go back "
                      "to", record.serial if record else "?")

    def fields(self, record: Installed) -> dict[str, Any]:
        return {"serial": record.serial}

    def result(self, outcome: dict[str, Any], committed: bool) -> dict[str, Any]:
        return {"serial": outcome["serial"]}

    def start_line(self, record: Installed) -> str:
        return t("run.cert_rolled_back", serial=record.serial, cmd=record.cmd_id)

    def describe(self, record: Installed) -> str:
        return f"client certificate {record.serial}"

    async def resume(self, agent: AgentContext, why: str) -> bool:
        request_restart(agent, why)  # the previous pair is read at start only
        return True


def of(config: Any) -> CertTrial | None:
    """The certificate trial of this config: None without a client certificate."""
    tls = config.mqtt.tls
    if tls is None or tls.cert is None or tls.key is None:
        return None
    return CertTrial(Path(tls.cert), Path(tls.key))
