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
    # The protocol libraries are chatty at INFO (every reconnect attempt): keep them to warnings.
    for noisy in ("pymodbus", "batigate.mqtt"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
