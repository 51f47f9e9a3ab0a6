"""Agent updates, the release and trial side (agent/lifecycle/update.py, agent/lifecycle/update_trial.py), with real
parts: an asyncio HTTP server on 127.0.0.1, real Ed25519 signatures, real wheels written here,
real venvs and `pip install --no-index`, and a real `batigate run` process that execs the release
in force. The command itself is in tests/commands/test_update_install.py."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import gzip
import hashlib
import io
import json
import os
import subprocess
import sys
import tarfile
import tempfile
import time
import zipfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from agent.config import loader as config_mod
from agent.lifecycle import release
from agent.lifecycle import update
from agent.lifecycle import update_trial
from agent.sdk.errors import ConfigError
from tests.commands.conftest import config_doc

BATIGATE = Path(sys.executable).with_name("batigate")

# The fake agent: `--version` like click's, otherwise it says how it was started (and proves its
# dependency wheel came from the bundle too).
FAKE_MAIN = """\
import json, os, sys
def main():
    if sys.argv[1:] == ["--version"]:
        print("batigate, version {version}")
        return 0
    import fakedep
    print(json.dumps({{"argv": sys.argv[1:], "prefix": sys.prefix, "dep": fakedep.NAME,
                      "guard": os.environ.get("BATIGATE_RELEASE")}}))
    return 0
"""


# -- building releases ---------------------------------------------------------------------------

def wheel(name: str, version: str, files: dict[str, str], *, requires: tuple[str, ...] = (),
          scripts: dict[str, str] | None = None) -> tuple[str, bytes]:
    """A pure-Python wheel, written by hand (PEP 427): no build backend, milliseconds."""
    info = f"{name}-{version}.dist-info"
    files = dict(files)
    files[f"{info}/METADATA"] = (f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"
                                 + "".join(f"Requires-Dist: {r}\n" for r in requires))
    files[f"{info}/WHEEL"] = ("Wheel-Version: 1.0\nGenerator: batigate-tests\n"
                              "Root-Is-Purelib: true\nTag: py3-none-any\n")
    if scripts:
        files[f"{info}/entry_points.txt"] = "[console_scripts]\n" + "".join(
            f"{k} = {v}\n" for k, v in scripts.items())
    record = []
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        for path, text in files.items():
            data = text.encode()
            zf.writestr(path, data)
            digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=")
            record.append(f"{path},sha256={digest.decode()},{len(data)}")
        record.append(f"{info}/RECORD,,")
        zf.writestr(f"{info}/RECORD", "\n".join(record) + "\n")
    return f"{name}-{version}-py3-none-any.whl", buffer.getvalue()


def tar_gz(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, data in members.items():
            item = tarfile.TarInfo(name)
            item.size = len(data)
            tar.addfile(item, io.BytesIO(data))
    return buffer.getvalue()


def release_wheels(version: str, into: Path) -> Path:
    """The wheels of a release in a folder, as images/wheels.sh leaves them: the fake batigate
    wheel and the dependency wheel it requires."""
    into.mkdir(parents=True, exist_ok=True)
    agent_whl = wheel("batigate", version, {"batigate_fake.py": FAKE_MAIN.format(version=version)},
                      requires=("fakedep",), scripts={"batigate": "batigate_fake:main"})
    dep_whl = wheel("fakedep", "1.0", {"fakedep.py": "NAME = 'fakedep'\n"})
    for name, data in (agent_whl, dep_whl):
        (into / name).write_bytes(data)
    return into


def bundle(version: str) -> bytes:
    """A release bundle of those wheels, packed by the release tool's own packer."""
    with tempfile.TemporaryDirectory() as tmp:
        return release.tar_gz(release.wheels_in(release_wheels(version, Path(tmp))))


def release_sig(key: Ed25519PrivateKey, data: bytes) -> str:
    return base64.b64encode(key.sign(hashlib.sha256(data).hexdigest().encode())).decode()


def fake_release(releases: Path, name: str) -> Path:
    """A release folder whose `bin/batigate` reports how it was started (no venv: quick)."""
    home = releases / name
    (home / "bin").mkdir(parents=True)
    program = home / "bin" / "batigate"
    program.write_text(f'#!/bin/sh\necho "{name} $* guard=$BATIGATE_RELEASE"\n')
    program.chmod(0o755)
    return home


# -- a real HTTP server ----------------------------------------------------------------------------

class Files:
    """Serves `routes` (path -> body, or (status, headers, body)) over HTTP/1.1 on 127.0.0.1."""

    def __init__(self) -> None:
        self.routes: dict[str, Any] = {}
        self.requests: list[str] = []
        self.port = 0
        self.chunked = False

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        path = head.split(b"\r\n")[0].split(b" ")[1].decode()
        self.requests.append(path)
        route = self.routes.get(path.split("?")[0], (404, {}, b"not here"))
        status, headers, body = route if isinstance(route, tuple) else (200, {}, route)
        if self.chunked:
            headers = {**headers, "Transfer-Encoding": "chunked"}
            body = b"".join(b"%x\r\n%s\r\n" % (len(body[i:i + 1000]), body[i:i + 1000])
                            for i in range(0, len(body), 1000)) + b"0\r\n\r\n"
        else:
            headers = {"Content-Length": str(len(body)), **headers}
        writer.write(f"HTTP/1.1 {status} X\r\n".encode() + b"".join(
            f"{k}: {v}\r\n".encode() for k, v in headers.items()) + b"\r\n" + body)
        with contextlib.suppress(ConnectionError):
            await writer.drain()
        writer.close()


@pytest.fixture
async def files() -> AsyncIterator[Files]:
    server_files = Files()
    server = await asyncio.start_server(server_files.serve, "127.0.0.1", 0)
    server_files.port = server.sockets[0].getsockname()[1]
    async with server:
        yield server_files


# -- download and checks ---------------------------------------------------------------------------

async def test_fetch_follows_a_redirect_hashes_and_takes_chunked_bodies(files: Files,
                                                                         tmp_path: Path) -> None:
    data = os.urandom(70_000)
    files.routes["/b.tgz"] = data
    files.routes["/moved"] = (302, {"Location": "/b.tgz"}, b"")
    got = await update.fetch(files.url("/moved?token=secret"), tmp_path / "x", size=len(data))
    assert got == hashlib.sha256(data).hexdigest() and (tmp_path / "x").read_bytes() == data
    assert files.requests == ["/moved?token=secret", "/b.tgz"]
    files.chunked = True
    assert await update.fetch(files.url("/b.tgz"), tmp_path / "y", size=len(data)) == got


async def test_fetch_refuses_a_wrong_size_a_missing_file_and_hides_tokens(files: Files,
                                                                          tmp_path: Path) -> None:
    files.routes["/b.tgz"] = b"x" * 1000
    with pytest.raises(update.UpdateError, match="sends 1000 bytes; the command says 999"):
        await update.fetch(files.url("/b.tgz"), tmp_path / "x", size=999)
    files.chunked = True  # no Content-Length: the length is only known while reading
    with pytest.raises(update.UpdateError, match="larger than the 999 bytes"):
        await update.fetch(files.url("/b.tgz"), tmp_path / "x", size=999)
    with pytest.raises(update.UpdateError, match="received 1000 bytes; the command says 1001"):
        await update.fetch(files.url("/b.tgz"), tmp_path / "x", size=1001)
    with pytest.raises(update.UpdateError, match="HTTP 404") as err:
        await update.fetch(files.url("/gone?sig=SECRET"), tmp_path / "x", size=1)
    assert "SECRET" not in str(err.value)
    with pytest.raises(update.UpdateError, match="cannot reach"):
        await update.fetch("http://127.0.0.1:1/b.tgz", tmp_path / "x", size=1)


def test_the_release_signature_covers_the_sha256() -> None:
    key = Ed25519PrivateKey.generate()
    digest = hashlib.sha256(b"bundle").hexdigest()
    good = base64.b64encode(key.sign(digest.encode())).decode()
    update.verify_release(digest, good, key.public_key())
    update.verify_release(digest, good.rstrip("=").replace("+", "-").replace("/", "_"),
                          key.public_key())  # URL-safe, unpadded: the same signature
    for sha, sig, pub in ((hashlib.sha256(b"other").hexdigest(), good, key.public_key()),
                          (digest, good, Ed25519PrivateKey.generate().public_key()),
                          (digest, "not base64!", key.public_key()),
                          (digest, "", key.public_key())):
        with pytest.raises(update.UpdateError, match="does not verify"):
            update.verify_release(sha, sig, pub)


async def test_unpack_takes_wheels_only_and_never_writes_outside(tmp_path: Path) -> None:
    (tmp_path / "out").mkdir()
    path = tmp_path / "b.tgz"
    path.write_bytes(tar_gz({"a/x-1-py3-none-any.whl": b"1", "y-1-py3-none-any.whl": b"2"}))
    assert await update.unpack(path, tmp_path / "out") == ["x-1-py3-none-any.whl",
                                                           "y-1-py3-none-any.whl"]
    for members in ({"../../evil-1-py3-none-any.whl": b"1", "notes.txt": b"2"},
                    {"x.whl": b"1", "b/x.whl": b"2"}, {}):
        path.write_bytes(tar_gz(members))
        with pytest.raises(update.UpdateError):
            await update.unpack(path, tmp_path / "out")
    assert not (tmp_path / "evil-1-py3-none-any.whl").exists()
    path.write_bytes(gzip.compress(b"not a tar"))
    with pytest.raises(update.UpdateError, match="not a readable tar.gz"):
        await update.unpack(path, tmp_path / "out")


async def test_install_makes_a_venv_from_the_bundle_and_refuses_a_version_mismatch(
        tmp_path: Path) -> None:
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    bundle_path = tmp_path / "b.tgz"
    bundle_path.write_bytes(bundle("9.9.9"))
    await update.unpack(bundle_path, wheels)
    await update.install(wheels, tmp_path / "rel" / "9.9.9", "9.9.9")
    ran = subprocess.run([tmp_path / "rel" / "9.9.9" / "bin" / "batigate", "x"],
                         capture_output=True, text=True, check=True)
    assert json.loads(ran.stdout)["dep"] == "fakedep"  # the dependency came from the bundle
    with pytest.raises(update.UpdateError, match="pip install failed"):
        await update.install(wheels, tmp_path / "rel" / "9.9.8", "9.9.8")  # not in the bundle
    assert not (tmp_path / "rel" / "9.9.8").exists()  # nothing half-made stays


# -- links, trial, rollback at start ------------------------------------------------------------

def trial(releases: Path, deadline: float, previous: str = "1.0") -> update_trial.Release:
    record = update_trial.Release(cmd_id="c-1", version="2.0", release="2.0", previous=previous,
                                  deadline=deadline, by="ops")
    update_trial.AgentRelease(releases).begin(record)
    update.set_link(releases / "previous", previous)
    update.set_link(releases / "current", "2.0")
    return record


def test_a_trial_past_its_deadline_is_rolled_back_at_start(tmp_path: Path) -> None:
    releases = tmp_path / "releases"
    fake_release(releases, "1.0")
    fake_release(releases, "2.0")
    now = time.time()
    trial(releases, now + 60)
    assert update_trial.AgentRelease(releases).check_at_start(now=now) is None  # still in time
    assert os.readlink(releases / "current") == "2.0"
    line = update_trial.AgentRelease(releases).check_at_start(now=now + 61)
    assert line is not None and "2.0" in line and "back to 1.0" in line
    assert os.readlink(releases / "current") == "1.0"
    assert update_trial.AgentRelease(releases).pending() is None
    outcome = update_trial.AgentRelease(releases).take_outcome()
    assert outcome is not None and outcome["type"] == "update.rolled_back"
    assert outcome["cmd"] == "c-1" and "not healthy in time" in outcome["reason"]
    assert update_trial.AgentRelease(releases).check_at_start(now=now + 62) is None  # once


def test_rollback_to_a_missing_previous_leaves_the_built_in_agent(tmp_path: Path) -> None:
    releases = tmp_path / "releases"
    fake_release(releases, "2.0")
    trial(releases, 0, previous=str(tmp_path / "no-such-venv"))
    assert update_trial.AgentRelease(releases).check_at_start(now=time.time()) is not None
    assert not (releases / "current").exists() and not (releases / "current").is_symlink()


def test_an_unreadable_trial_note_goes_back_to_the_previous_release(tmp_path: Path) -> None:
    releases = tmp_path / "releases"
    fake_release(releases, "1.0")
    fake_release(releases, "2.0")
    trial(releases, time.time() + 600)
    (releases / update_trial.TRIAL).write_text("{half a note")
    assert update_trial.AgentRelease(releases).pending() is None
    assert os.readlink(releases / "current") == "1.0"


def test_prune_keeps_current_and_previous_only(tmp_path: Path) -> None:
    releases = tmp_path / "releases"
    for name in ("1.0", "2.0", "3.0", "0.9"):
        fake_release(releases, name)
    update.set_link(releases / "previous", "1.0")
    update.set_link(releases / "current", "2.0")
    update.prune(releases)
    assert sorted(p.name for p in releases.iterdir()) == ["1.0", "2.0", "current", "previous"]


def run_cli(config: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(BATIGATE), "run", "--config", str(config)], capture_output=True,
                          text=True, timeout=60, env={**os.environ, **(env or {})})


def cli_config(tmp_path: Path, releases: Path) -> Path:
    path = tmp_path / "gateway.yaml"
    path.write_text(yaml.safe_dump(config_doc(tmp_path, update={"releases": str(releases)})))
    return path


def test_batigate_run_rolls_back_an_expired_trial_then_execs_the_release_in_force(
        tmp_path: Path) -> None:
    releases = tmp_path / "releases"
    fake_release(releases, "1.0")
    fake_release(releases, "2.0")
    config = cli_config(tmp_path, releases)
    trial(releases, time.time() + 600)
    ran = run_cli(config)  # in time: the release on trial runs, in this same process
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.strip() == f"2.0 run --config {config} guard={(releases / '2.0')}"
    (releases / update_trial.TRIAL).write_text(json.dumps(
        {**json.loads((releases / update_trial.TRIAL).read_text()), "deadline": time.time() - 1}))
    ran = run_cli(config)
    assert ran.returncode == 0, ran.stderr
    assert "not healthy in time: back to 1.0" in ran.stderr
    assert ran.stdout.startswith("1.0 run --config ")
    # The release started never execs again (its own `run` sees the guard).
    os.environ[update_trial.EXEC_GUARD] = "x"
    try:
        assert update_trial.enter_current(releases, ["run"]) is None
    finally:
        del os.environ[update_trial.EXEC_GUARD]


def test_a_broken_current_link_falls_back_to_the_built_in_agent(tmp_path: Path) -> None:
    releases = tmp_path / "releases"
    releases.mkdir()
    update.set_link(releases / "current", "gone")
    line = update_trial.enter_current(releases, ["run"])
    assert line is not None and "running the built-in agent" in line
    update.set_link(releases / "current", sys.prefix)  # this very environment: no exec
    assert update_trial.enter_current(releases, ["run"]) is None


# -- the config section --------------------------------------------------------------------------

def test_the_update_section_has_defaults_and_rejects_unknown_keys(tmp_path: Path) -> None:
    doc = config_doc(tmp_path)
    config = config_mod.parse(yaml.safe_dump(doc), "gw.yaml")
    assert config.update.public_key is None and config.update.health_within == 600
    assert config.update.releases == Path("/var/lib/batigate/releases")
    doc["update"] = {"public_key": "/etc/batigate/release.pub", "health_within": "2m"}
    assert config_mod.parse(yaml.safe_dump(doc), "gw.yaml").update.health_within == 120
    doc["update"] = {"public_kee": "x", "health_within": "5s"}
    text = yaml.safe_dump(doc, sort_keys=False)
    with pytest.raises(ConfigError) as err:
        config_mod.parse(text, "gw.yaml")
    line = text.splitlines().index("update:") + 1
    assert err.value.problems == [
        f"gw.yaml:{line + 1}: update.public_kee: unknown key",
        f"gw.yaml:{line + 2}: update.health_within: Input should be greater than or equal to 30"]
