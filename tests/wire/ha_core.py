"""A real Home Assistant core for the interop test of the `homeassistant` wire profile.

The newest release that installs on this machine's Python (3.11; 2024.4 and later want 3.12) goes
in its own venv under build/interop/ha, made once and kept (a stamp names the release). Home
Assistant installs the requirements of the integrations it loads at start; here they are
installed beforehand (read from the release's own manifests) and it runs with `--skip-pip`, so a
run needs no network but 127.0.0.1.

Set-up without the UI, through Home Assistant's own HTTP API only (no private storage file is
written): `/api/onboarding/users` creates the owner and hands an authorization code, which
`/auth/token` exchanges for an access token; the MQTT config entry comes from the config flow
(`/api/config/config_entries/flow`, handler `mqtt`), which also checks the broker answers."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

HA_VERSION = "2024.3.3"
VENV = Path(__file__).resolve().parents[2] / "build" / "interop" / "ha"
HASS = VENV / "bin" / "hass"
INSTALL_TIMEOUT = 900  # a cold install downloads ~150 MB of wheels

# Run inside the HA venv: the requirements of every integration Home Assistant sets up here
# (the ones it always loads, and http, api, mqtt), following their dependencies; with the
# release's own constraints (package_constraints.txt), as Home Assistant installs them itself.
REQUIREMENTS = """
import json, pathlib
import homeassistant
from homeassistant import bootstrap
components = pathlib.Path(homeassistant.__file__).parent / "components"
todo = set(bootstrap.DEFAULT_INTEGRATIONS) | bootstrap.CORE_INTEGRATIONS | {
    "http", "api", "mqtt", "logger", "system_log"}
seen, requirements = set(), set()
while todo:
    domain = todo.pop()
    if domain in seen:
        continue
    seen.add(domain)
    manifest = json.loads((components / domain / "manifest.json").read_text())
    requirements.update(manifest.get("requirements", []))
    todo.update(manifest.get("dependencies", []))
    todo.update(manifest.get("after_dependencies", []))  # imported by the code all the same
print("\\n".join(sorted(requirements)))
"""
# Unpinned dependencies whose later releases broke this Home Assistant release: josepy 2 dropped
# ComparableX509, which acme (hass-nabucasa, imported by the HTTP server on every request) uses.
LATER_BREAKAGES = ["josepy<2"]
CONSTRAINTS = ("import pathlib, homeassistant; print(pathlib.Path(homeassistant.__file__).parent"
               " / 'package_constraints.txt')")

# Names the release and the recipe: a change to either makes the venv again.
STAMP = VENV / (".installed-" + HA_VERSION + "-" + hashlib.sha256(
    (REQUIREMENTS + CONSTRAINTS + " ".join(LATER_BREAKAGES)).encode()).hexdigest()[:12])


def ensure_installed() -> None:
    """Make the venv if the stamp is missing; raise (the test fails) if it cannot be made."""
    if STAMP.exists() and HASS.exists():
        return
    VENV.parent.mkdir(parents=True, exist_ok=True)
    log = VENV.parent / "ha-install.log"
    with log.open("w") as out:
        def run(*cmd: str) -> str:
            done = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=out, text=True,  # noqa: S603
                                  timeout=INSTALL_TIMEOUT, check=False, env=own_env())
            if done.returncode != 0:
                raise RuntimeError(f"{' '.join(cmd[:4])}... failed ({done.returncode}): see {log}")
            return done.stdout

        run(sys.executable, "-m", "venv", "--clear", str(VENV))
        pip = str(VENV / "bin" / "pip")
        run(pip, "install", "-q", f"homeassistant=={HA_VERSION}")
        requirements = run(str(VENV / "bin" / "python"), "-c", REQUIREMENTS).split()
        constraints = run(str(VENV / "bin" / "python"), "-c", CONSTRAINTS).strip()
        run(pip, "install", "-q", "-c", constraints, *requirements, *LATER_BREAKAGES)
    STAMP.touch()


def own_env() -> dict[str, str]:
    """The environment without our venv's and our source tree's Python settings."""
    return {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}


def write_config_dir(directory: Path, http_port: int) -> None:
    """configuration.yaml with only what the test needs: no default_config (no cloud, no
    zeroconf/ssdp/dhcp discovery), the HTTP server on 127.0.0.1, the REST API. MQTT is set
    up from a config entry (its broker can no longer be given in YAML)."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "configuration.yaml").write_text(f"""\
homeassistant:
  name: batigate interop
  latitude: 48.85
  longitude: 2.35
  elevation: 35
  unit_system: metric
  time_zone: UTC
  currency: EUR
  country: FR
http:
  server_host: 127.0.0.1
  server_port: {http_port}
api:
logger:
  default: warning
""")


class HomeAssistantCore:
    """`hass -c DIR` as a subprocess, and a small client of its HTTP API."""

    def __init__(self, directory: Path, http_port: int) -> None:
        self.directory = directory
        self.base = f"http://127.0.0.1:{http_port}"
        self.client_id = f"{self.base}/"
        self.token: str | None = None
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        log = (self.directory / "hass.out").open("wb")
        self.proc = subprocess.Popen(  # noqa: S603
            [str(HASS), "-c", str(self.directory), "--skip-pip", "--log-no-color"],
            stdout=log, stderr=subprocess.STDOUT, env=own_env())

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)

    def log_tail(self, size: int = 4000) -> str:
        path = self.directory / "hass.out"
        return path.read_text(errors="replace")[-size:] if path.exists() else ""

    # -- HTTP ----------------------------------------------------------------------------------

    def request(self, method: str, path: str, body: Any = None, *, form: bool = False) -> Any:
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        data = None
        if body is not None:
            if form:
                data = urllib.parse.urlencode(body).encode()
                headers["Content-Type"] = "application/x-www-form-urlencoded"
            else:
                data = json.dumps(body).encode()
                headers["Content-Type"] = "application/json"
        request = urllib.request.Request(self.base + path, data=data, headers=headers,  # noqa: S310
                                         method=method)
        with urllib.request.urlopen(request, timeout=10) as answer:  # noqa: S310
            return json.loads(answer.read() or b"null")

    async def call(self, method: str, path: str, body: Any = None, *, form: bool = False) -> Any:
        return await asyncio.to_thread(self.request, method, path, body, form=form)

    async def wait_up(self, timeout: float) -> None:
        """Until the HTTP server answers (the onboarding view needs no token)."""
        end = time.monotonic() + timeout
        while True:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(f"hass exited ({self.proc.returncode}):\n{self.log_tail()}")
            try:
                await self.call("GET", "/api/onboarding")
                return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                if time.monotonic() > end:
                    raise RuntimeError(f"hass not up in {timeout}s:\n{self.log_tail()}") from None
            await asyncio.sleep(0.5)

    async def onboard(self) -> None:
        """The owner account, and an access token for it."""
        answer = await self.call("POST", "/api/onboarding/users", {
            "client_id": self.client_id, "name": "interop", "username": "interop",
            "password": "interop-test-password", "language": "en"})
        token = await self.call("POST", "/auth/token", {
            "grant_type": "authorization_code", "code": answer["auth_code"],
            "client_id": self.client_id}, form=True)
        self.token = token["access_token"]

    async def add_mqtt(self, port: int) -> dict[str, Any]:
        """The MQTT config entry, through the config flow; the finished flow's answer."""
        step = await self.call("POST", "/api/config/config_entries/flow", {"handler": "mqtt"})
        for _ in range(3):  # user -> broker -> created
            if step.get("type") != "form":
                break
            step = await self.call("POST", f"/api/config/config_entries/flow/{step['flow_id']}",
                                   {"broker": "127.0.0.1", "port": port}
                                   if step.get("step_id") == "broker" else {})
        if step.get("type") != "create_entry":
            raise RuntimeError(f"the MQTT config flow did not finish: {step}")
        return dict(step)

    async def states(self) -> dict[str, dict[str, Any]]:
        return {s["entity_id"]: s for s in await self.call("GET", "/api/states")}
