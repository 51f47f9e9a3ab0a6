"""The dashboard through a real terminal (tmux, 80×24), as a technician runs it: `batigate demo`
in French shows the building and the VMC alarm appears within its rule's delay; `batigate
status --watch` shows a running agent; Ctrl-C stops both cleanly. Off a terminal, plain lines."""

from __future__ import annotations

import asyncio
import signal
import sys
from pathlib import Path

import pytest

from tests.display.tmux import TMUX, Terminal
from tests.local.helpers import site


@pytest.fixture(autouse=True)
def _tmux_installed() -> None:
    if TMUX is None:  # a skip would count as a pass
        pytest.fail("tmux is needed: images/host-setup.sh (run by .ci/run) installs it")

BATIGATE = f"{sys.executable} -m agent"
SPEED = 5.0
# vmc-depression-loss: the depression drops below the rule's threshold at 30 s of scenario time;
# the demo starts the scenario after 10 s; both run SPEED times faster. The demo's rule holds
# 5 s (`for: 5s`), the VMC is polled every 2 s.
DROP_AT = (10 + 30) / SPEED
RULE_FOR, POLL = 5.0, 2.0


def _env(lang: str) -> dict[str, str]:
    # BATIGATE_LANG empty: the locale decides (tests/conftest.py sets it to en for the others).
    return {"BATIGATE_LANG": "''", "LANG": lang, "LC_ALL": lang, "TERM": "xterm-256color",
            "PYTHONPATH": str(Path(__file__).resolve().parents[2])}


async def test_demo_dashboard_in_french_shows_the_vmc_alarm_then_ctrl_c() -> None:
    term = Terminal()
    try:
        await term.start(f"{BATIGATE} demo --speed {SPEED:g}", _env("fr_FR.UTF-8"))
        screen, _ = await term.wait_for("Équipements", within=20)
        loop = asyncio.get_running_loop()
        shown_at = loop.time()
        lines = screen.rstrip("\n").split("\n")
        assert len(lines) <= 24 and all(len(line) <= 80 for line in lines)
        assert lines[0].lstrip().startswith("batigate") and "Ctrl-C pour arrêter" in screen
        for device in ("vmc ", "pump", "meter-1", "heat-10"):
            assert device in screen
        assert "Aucune alarme active" in screen
        screen, waited = await term.wait_for("vmc-low-depression", within=DROP_AT + RULE_FOR
                                             + 2 * POLL + 6)
        # The rule raised it, not something earlier: never before its threshold and delay.
        assert loop.time() - shown_at + 3 >= RULE_FOR, waited
        alarm_line = next(line for line in screen.split("\n") if "vmc-low-depression" in line)
        assert "majeure" in alarm_line and " Pa" in alarm_line and "depuis" in alarm_line
        assert "alarme(s) active(s)" in screen
        assert " m³" in screen and " kWh" in screen  # human units, not J and m3
        await term.keys("C-c")
        screen, _ = await term.wait_for("EXIT=", within=15)
        assert "EXIT=0" in screen and "démo arrêtée" in screen
    finally:
        await term.close()


async def test_status_watch_shows_the_running_agent_then_ctrl_c(tmp_path: Path) -> None:
    async with site(tmp_path) as s:
        config = s.agent.config.source
        term = Terminal()
        try:
            await term.start(f"{BATIGATE} status --watch --config {config}", _env("C.UTF-8"))
            screen, _ = await term.wait_for("vmc-low-depression", within=15)
            assert "Devices" in screen and "1 active alarm(s)" in screen
            vmc_row = next(line for line in screen.split("\n") if line.startswith("vmc "))
            assert " ok " in vmc_row and " Pa" in vmc_row
            assert "lan:" in screen and "req" in screen  # per-bus counters
            await term.keys("C-c")
            screen, _ = await term.wait_for("EXIT=", within=10)
            assert "EXIT=0" in screen
        finally:
            await term.close()

        # Not a terminal: one line per change, for logs and pipes.
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "agent", "--lang", "en", "status", "--watch", "--config",
            str(config), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        await asyncio.sleep(3)
        proc.send_signal(signal.SIGINT)
        async with asyncio.timeout(10):
            out, err = await proc.communicate()
        text = out.decode()
        assert proc.returncode == 0, err.decode()
        assert "ALARM major vmc-low-depression" in text and "\x1b[" not in text
        assert any(line.split(" ", 2)[1:2] == ["vmc"] and " ok: " in line
                   for line in text.splitlines()), text
