"""Certificate rotation by command: `cert.renew`, `cert.install`, `cert.rollback`.

    backend ──cert.renew──► gateway: new P-256 key kept as <key>.new (0600), answers the CSR
    backend ──CA signs──► cert.install {cert}: checked against <key>.new, the gateway id and
                          the CA; then a probe connection to the broker with the NEW identity;
                          only then installed (the previous pair kept as *.prev) and the agent
                          restarts on it. Any failure leaves the running identity untouched.
                          The restarted agent must reach the broker with it within
                          TRIAL_WITHIN, or the previous pair comes back by itself
                          (agent/lifecycle/cert_trial.py, watched by trial_watch.py); the
                          answer's final form follows on cmd/res.
    backend ──cert.rollback──► the *.prev pair comes back, and the agent restarts.

The key never appears in an answer or a log: only the CSR (public) and fingerprints do.
Listed in agent/commands/catalog.py.
"""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from pydantic import Field

from agent.commands.models import Code, NoArgs, Outcome, Problem, Status, _Args, ok
from agent.commands.registry import Call, op
from agent.lifecycle.cert_trial import TRIAL_WITHIN, CertTrial, Installed
from agent.runtime.context import AgentContext
from agent.runtime.restart import request_restart
from provisioning import certs, keys
from provisioning.probe import client_context, probe


class InstallArgs(_Args):
    cert: str = Field(max_length=16384, description="PEM certificate (and intermediates) "
                                                    "issued for the CSR of cert.renew")


def _paths(agent: AgentContext) -> tuple[Path, Path, Path | None]:
    tls = agent.config.mqtt.tls
    if tls is None or tls.cert is None or tls.key is None:
        raise Problem(Code.CONFLICT, "this gateway has no client certificate configured "
                      "(mqtt.tls.cert and key)")
    return Path(tls.cert), Path(tls.key), Path(tls.ca) if tls.ca else None


@op("cert.renew", writes=True)
async def cert_renew(call: Call, args: NoArgs) -> Outcome:
    """Generate a new key on the gateway (kept aside until its certificate is installed) and
    answer its CSR (PEM, CN = gateway id). The key itself never leaves the gateway."""
    _, key_path, _ = _paths(call.agent)
    pending = certs.pending_key_path(key_path)
    pending.unlink(missing_ok=True)  # an abandoned renewal: its CSR was never signed
    key = keys.generate(pending)
    request = keys.csr(key, call.agent.config.gateway.id)
    return ok({"csr": keys.csr_pem(request), "key_sha256": keys.public_fingerprint(key)})


@op("cert.install", InstallArgs, writes=True)
async def cert_install(call: Call, args: InstallArgs) -> Outcome:
    """Check the certificate against the renewed key, the gateway id and the CA, prove the
    broker accepts it, then install it and restart. Answers `in_progress`."""
    agent = call.agent
    cert_path, key_path, ca_path = _paths(agent)
    pending = certs.pending_key_path(key_path)
    if not pending.exists():
        raise Problem(Code.CONFLICT, "no renewed key waits for a certificate: send cert.renew "
                      "first")
    try:
        key = keys.load(pending)
        chain = certs.load_chain(args.cert)
        leaf = certs.check(chain, key, certs.load_ca(ca_path), agent.config.gateway.id,
                           dt.datetime.fromtimestamp(call.now, dt.UTC))
    except (certs.CertProblem, keys.KeyError_) as exc:
        raise Problem(Code.UNPROCESSABLE, str(exc)) from None
    await _prove(agent, chain, pending, ca_path)
    try:
        certs.install(chain, cert_path, key_path, new_key=True)
    except OSError as exc:
        raise Problem(Code.FAILED, f"install failed, previous certificate kept: "
                      f"{exc.strerror or exc}") from None
    # On trial from here on: the restarted agent must reach the broker with it (trial_watch).
    trial = Installed(cmd_id=call.cmd_id, serial=f"{leaf.serial_number:x}",
                      deadline=call.now + TRIAL_WITHIN, by=call.by)
    CertTrial(cert_path, key_path).begin(trial)
    request_restart(agent, f"new client certificate {trial.serial} by {call.cmd_id}")
    return Outcome(Status.IN_PROGRESS, Code.ACCEPTED,
                   {**certs.describe(leaf), "restart": True,
                    "connected_before": round(trial.deadline, 3)})


async def _prove(agent: AgentContext, chain: list[Any], key_path: Path,
                 ca_path: Path | None) -> None:
    """A probe connection with the new pair, written to a private temporary file for ssl."""
    mqtt = agent.config.mqtt
    staged = key_path.with_name(f".{key_path.name}.probe.crt")
    staged.unlink(missing_ok=True)
    fd = os.open(staged, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(b"".join(c.public_bytes(serialization.Encoding.PEM) for c in chain))
    try:
        context = client_context(str(ca_path) if ca_path else None, str(staged), str(key_path))
        result = await probe(mqtt.host, mqtt.port, context, f"{agent.config.gateway.id}-probe")
    finally:
        staged.unlink(missing_ok=True)
    if not result.ok:
        raise Problem(Code.UNPROCESSABLE, f"the broker does not accept the new certificate, "
                      f"nothing was changed: {result.message}")


@op("cert.rollback", writes=True)
async def cert_rollback(call: Call, args: NoArgs) -> Outcome:
    """Put the previous certificate and key back and restart. Answers `in_progress`."""
    cert_path, key_path, _ = _paths(call.agent)
    reason = f"cert.rollback command {call.cmd_id}"
    # An install on trial ends here (its final answer goes out now); else the *.prev pair.
    if await call.agent.trials.rollback(CertTrial.kind, reason) is None and \
            not certs.rollback(cert_path, key_path):
        raise Problem(Code.CONFLICT, "there is no previous certificate to go back to")
    request_restart(call.agent, f"client certificate rolled back by {call.cmd_id}")
    return Outcome(Status.IN_PROGRESS, Code.ACCEPTED, {"restart": True})
