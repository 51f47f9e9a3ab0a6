"""`batigate demo` (what `make demo` runs) starts, shows live data and stops by itself."""

from __future__ import annotations

import subprocess
import sys


def test_demo_shows_live_telemetry_and_stops_cleanly() -> None:
    result = subprocess.run([sys.executable, "-m", "agent", "demo", "--seconds", "12"],
                            capture_output=True, text=True, timeout=90, check=False)
    out = result.stdout
    assert result.returncode == 0, result.stderr[-2000:]
    assert "dev/vmc/tm seq=" in out and "exhaust_pressure=" in out
    assert "dev/meter-1/tm" in out  # the M-Bus meters too
    assert "dev/flat-101-water/tm" in out and "rssi=" in out  # and the radio meters
    assert "{'online': True}" in out and "{'online': False}" in out  # state, live or retained
    assert "demo stopped" in out
