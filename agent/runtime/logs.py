"""Logging setup, done once by the CLI; modules only call logging.getLogger(__name__)."""

from __future__ import annotations

import logging
import sys


def setup(level: str = "info") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # The MQTT library is chatty at INFO (every reconnect attempt): keep it to warnings.
    logging.getLogger("batigate.mqtt").setLevel(logging.WARNING)
    # pymodbus logs every unanswered request at ERROR with its last 20 frames; the poller already
    # says once that a device is down. `log.level` (logger pymodbus) brings it back to diagnose.
    logging.getLogger("pymodbus").setLevel(logging.CRITICAL)
