"""The gateway's vital signs for the periodic `health` message and the `health` command.

`report(agent)` adds to the supervisor's own counters what a remote operator needs to tell a sick
gateway from a sick building: CPU, memory, disk of the buffer's file system, the age of the oldest
buffered message, per-bus error counters, days until the client certificate expires, and whether
the kernel clock is synchronized (timestamps of an unsynchronized gateway cannot be trusted).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import psutil
from cryptography import x509

from agent.runtime.context import AgentContext
from agent.runtime.timesync import kernel_clock_synced

log = logging.getLogger(__name__)

def report(agent: AgentContext) -> dict[str, Any]:
    """The full health body: the supervisor's `Agent.health()` plus the system figures."""
    body = dict(agent.health())
    body.update(system(agent))
    return body


def system(agent: AgentContext) -> dict[str, Any]:
    config = agent.config
    outbox = body_outbox(agent)
    return {
        "cpu": _cpu(),
        "memory": _memory(),
        "disk": _disk(Path(config.buffer.path).parent),
        "outbox_depth": outbox["depth"],
        "outbox_oldest_age": outbox["oldest_age"],
        "cert_days": cert_days(config.mqtt.tls.cert if config.mqtt.tls else None,
                               now=agent.clock.time()),
        "clock_synced": clock_synced(agent),
    }


def body_outbox(agent: AgentContext) -> dict[str, Any]:
    stats = agent.outbox.stats()
    return {"depth": stats["depth"], "oldest_age": stats["oldest_age"]}


def _cpu() -> dict[str, Any]:
    process = psutil.Process()
    times = process.cpu_times()
    # cpu_percent(None) compares with the previous call: the first one reads 0.0, which is why the
    # process and system figures are both given and the counters (user/system s) are exact.
    return {"process_s": round(times.user + times.system, 2),
            "system_pct": psutil.cpu_percent(None),
            "load1": round(os.getloadavg()[0], 2)}


def _memory() -> dict[str, Any]:
    vm = psutil.virtual_memory()
    return {"rss": psutil.Process().memory_info().rss, "available": vm.available,
            "used_pct": vm.percent}


def _disk(path: Path) -> dict[str, Any]:
    try:
        usage = psutil.disk_usage(str(path))
    except OSError as exc:  # the buffer directory vanished: say so rather than fail the message
        return {"path": str(path), "error": exc.strerror or str(exc)}
    return {"path": str(path), "free": usage.free, "used_pct": usage.percent}


def cert_days(path: Path | None, *, now: float) -> float | None:
    """Days until the client certificate expires (negative once expired); None without one."""
    if path is None:
        return None
    try:
        cert = x509.load_pem_x509_certificate(Path(path).read_bytes())
    except (OSError, ValueError) as exc:
        log.warning("cannot read the client certificate %s: %s", path, exc)
        return None
    expires = cert.not_valid_after_utc.timestamp()
    return round((expires - now) / 86400, 1)


def clock_synced(agent: AgentContext) -> bool:
    kernel = kernel_clock_synced()
    if kernel is not None:
        return kernel
    return bool(agent.pipeline.clock_synced())

