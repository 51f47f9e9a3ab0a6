"""The certificate expiry watch: a `cert.expiring` event once a day from 30 days before expiry.

`health` carries `cert_days` every minute; an event is what a backend turns into a ticket, so it
comes once at start and then daily while the certificate is in its last 30 days (or expired).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from pathlib import Path
from typing import Any

from cryptography import x509

from agent.runtime.context import AgentContext

log = logging.getLogger(__name__)

WARN_DAYS = 30.0
INTERVAL = 86400.0


def expiring(path: Path, now: float, warn_days: float = WARN_DAYS) -> dict[str, Any] | None:
    """The event body when the certificate at `path` is within `warn_days` of expiry."""
    try:
        cert = x509.load_pem_x509_certificate(Path(path).read_bytes())
    except (OSError, ValueError) as exc:
        log.warning("cannot read the client certificate %s: %s", path, exc)
        return None
    after = cert.not_valid_after_utc
    days = (after.timestamp() - now) / 86400
    if days > warn_days:
        return None
    return {"type": "cert.expiring", "days_left": round(days, 1),
            "not_after": after.isoformat(), "serial": f"{cert.serial_number:x}",
            "expired": days < 0}


async def expiry(agent: AgentContext, interval: float = INTERVAL) -> None:
    tls = agent.config.mqtt.tls
    if tls is None or tls.cert is None:
        return
    while True:
        body = expiring(Path(tls.cert), agent.clock.time())
        if body is not None:
            log.warning("client certificate %s expires on %s (%.1f days): renew it", tls.cert,
                        body["not_after"], body["days_left"])
            agent.pipeline.event(body)
        await asyncio.sleep(interval)


def utc(ts: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(ts, dt.UTC)
