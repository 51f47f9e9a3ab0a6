"""The status page as a technician sees it: headless Chromium loads it, the DOM shows the devices
and the alarm in French, and the screenshot really shows the red alarm banner above the devices."""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from pathlib import Path

import pytest

from agent.local.page import ALARM_RED
from tests.local.helpers import curl, site
from tests.local.png import count_colour

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--no-first-run", "--disable-component-update", "--disable-sync",
         "--window-size=1000,1600", "--hide-scrollbars"]



async def _chromium(*args: str) -> bytes:
    if CHROMIUM is None:  # a skip would count as a pass
        pytest.fail("chromium is needed: images/host-setup.sh (run by .ci/run) installs it")
    profile = tempfile.mkdtemp(prefix="bg-chromium-")  # a fresh profile every run
    try:
        proc = await asyncio.create_subprocess_exec(
            str(CHROMIUM), *FLAGS, f"--user-data-dir={profile}", *args,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL)
        try:
            async with asyncio.timeout(40):
                out, _ = await proc.communicate()
        except TimeoutError:
            proc.kill()
            await proc.wait()
            raise
        assert proc.returncode == 0
        return out
    finally:
        shutil.rmtree(profile, ignore_errors=True)


def _rgb(colour: str) -> tuple[int, int, int]:
    return int(colour[1:3], 16), int(colour[3:5], 16), int(colour[5:7], 16)


async def test_page_in_chromium_shows_devices_and_the_alarm(tmp_path: Path) -> None:
    async with site(tmp_path) as s:
        await asyncio.sleep(2.5)  # a few one-second buckets for the sparklines
        url = f"{s.url}/?token={s.token}&lang=fr"
        dom = (await _chromium("--dump-dom", url)).decode()
        shot = tmp_path / "page.png"
        await _chromium(f"--screenshot={shot}", url)
        status, _, _ = await curl(f"{s.url}/")  # and without the token, nothing is shown
        assert status == 401
    assert 'data-alarm="vmc-low-depression"' in dom and "majeure" in dom
    for device in ("vmc", "pump", "meter-1", "heat-10"):
        assert f'data-device="{device}"' in dom
    assert "Équipements" in dom and "18 450 kWh" in dom and " Pa<" in dom
    assert "<svg" in dom  # the sparklines (one-second buckets in this test)
    red, rows = count_colour(shot.read_bytes(), _rgb(ALARM_RED))
    assert red > 5000, red  # the banner is drawn, not just in the markup
    _, _, devices_row = dom.partition('id="devices"')
    assert devices_row and max(rows) < 600  # and it sits at the top, above the device table
