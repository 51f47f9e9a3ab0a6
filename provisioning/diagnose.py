"""Why is this gateway's identity refused? Local checks first, then the broker.

mosquitto (like most brokers) refuses a bad client certificate by closing the connection, with no
TLS alert that says why. The gateway can still tell: the same checks `install-cert` makes, run on
the installed files, name the cause (expired, wrong CA, wrong key, wrong name).
"""

from __future__ import annotations

import datetime as dt
import ssl
from pathlib import Path
from typing import Any

from provisioning import certs, keys
from provisioning.probe import ProbeResult, client_context, probe


def local_problems(tls: Any, gateway_id: str, now: dt.datetime | None = None) -> list[str]:
    """What is wrong with the configured CA, certificate and key; [] when nothing is."""
    now = now or dt.datetime.now(dt.UTC)
    if tls is None:
        return []
    problems: list[str] = []
    try:
        ca = certs.load_ca(tls.ca) if tls.ca else None
    except certs.CertProblem as exc:
        problems.append(str(exc))
        ca = None
    if tls.cert is None or tls.key is None:
        return problems
    try:
        chain = certs.load_chain(Path(tls.cert).read_bytes(), f"the certificate {tls.cert}")
        key = keys.load(Path(tls.key))
    except OSError as exc:
        return [*problems, f"cannot read {exc.filename}: {exc.strerror}"]
    except (certs.CertProblem, keys.KeyError_) as exc:
        return [*problems, str(exc)]
    if ca is None:
        return problems  # the system store: chain checks are the broker's business then
    try:
        certs.check(chain, key, ca, gateway_id, now)
    except certs.CertProblem as exc:
        problems.append(str(exc))
    return problems


async def broker(config: Any, *, timeout: float = 5.0) -> ProbeResult:
    """Probe the configured broker with the configured identity; explain a refusal."""
    mqtt = config.mqtt
    tls = mqtt.tls
    try:
        context = (client_context(str(tls.ca) if tls.ca else None,
                                  str(tls.cert) if tls.cert else None,
                                  str(tls.key) if tls.key else None) if tls else None)
    except (OSError, ssl.SSLError) as exc:
        return ProbeResult(False, "tls-client", f"cannot load the TLS files: {exc}")
    result = await probe(mqtt.host, mqtt.port, context, f"{config.gateway.id}-probe", timeout)
    if result.ok or result.stage != "tls-client":
        return result
    reasons = local_problems(tls, config.gateway.id)
    if reasons:
        return ProbeResult(False, result.stage, f"the broker refused this gateway's "
                           f"certificate: {'; '.join(reasons)}")
    return result
