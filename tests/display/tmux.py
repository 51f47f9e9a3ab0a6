"""A real terminal for the tests: a private tmux server, one 80×24 pane, read with capture-pane."""

from __future__ import annotations

import asyncio
import shutil
import tempfile
import time
from pathlib import Path

TMUX = shutil.which("tmux")


class Terminal:
    def __init__(self, width: int = 80, height: int = 24) -> None:
        # A socket path is limited to ~104 bytes: pytest's tmp_path can be longer.
        self.folder = Path(tempfile.mkdtemp(prefix="bg-tmux-"))
        self.socket = self.folder / "tmux.sock"
        self.width, self.height = width, height

    async def _tmux(self, *args: str) -> str:
        proc = await asyncio.create_subprocess_exec(
            str(TMUX), "-S", str(self.socket), *args,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        out, err = await proc.communicate()
        assert proc.returncode == 0, err.decode()
        return out.decode()

    async def start(self, command: str, env: dict[str, str]) -> None:
        exports = " ".join(f"{k}={v}" for k, v in env.items())
        # The pane stays after the command ends, with its exit code, for the test to read.
        await self._tmux("-f", "/dev/null", "new-session", "-d", "-x", str(self.width),
                         "-y", str(self.height), f"env {exports} {command}; echo EXIT=$?; "
                         "sleep 60")

    async def screen(self) -> str:
        return await self._tmux("capture-pane", "-p")

    async def keys(self, *keys: str) -> None:
        await self._tmux("send-keys", *keys)

    async def wait_for(self, text: str, within: float) -> tuple[str, float]:
        """The screen once `text` is on it, and how long that took; fails after `within` s."""
        start = time.monotonic()
        screen = ""
        while time.monotonic() - start < within:
            screen = await self.screen()
            if text in screen:
                return screen, time.monotonic() - start
            await asyncio.sleep(0.25)
        raise AssertionError(f"{text!r} not on the terminal within {within:g}s:\n{screen}")

    async def close(self) -> None:
        proc = await asyncio.create_subprocess_exec(
            str(TMUX), "-S", str(self.socket), "kill-server",
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
        await proc.wait()
        shutil.rmtree(self.folder, ignore_errors=True)
