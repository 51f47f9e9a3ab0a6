"""`batigate remote update`: a bundle made by `release build`, sent as a signed update.install by
the CLI (a subprocess) through a real mosquitto to real agents, which download it from a real
HTTP server and install it in a real venv. The staging: a canary that fails stops the rollout."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from agent.config import loader as config_mod
from agent.lifecycle import release
from agent.runtime import supervisor
from agent.lifecycle import update_trial
from tests.agent.test_update import Files, files, release_wheels
from tests.broker import Mosquitto
from tests.commands.mqtt_backend import agent_with_commands
from tests.remote.test_remote_cli import Remote, gateway_doc, write

__all__ = ["files"]  # the fixture, imported so that pytest finds it here


def built(tmp_path: Path, version: str = "9.9.9") -> tuple[release.Built, Path]:
    key_path = tmp_path / "release.key"
    key = release.generate_key(key_path)
    return (release.build(release_wheels(version, tmp_path / "wheels"), tmp_path / "dist", key),
            release.public_path(key_path))


def command_key(tmp_path: Path) -> tuple[Path, Path]:
    from agent.remote import commands  # noqa: PLC0415

    key = tmp_path / "ops.key"
    return key, commands.generate_key(key)


async def test_a_canary_that_fails_stops_the_rollout(tmp_path: Path, broker: Mosquitto,
                                                     files: Files) -> None:
    bundle, release_pub = built(tmp_path)
    key, pub = command_key(tmp_path)
    paths = {}
    for gw in ("gw-a", "gw-b"):
        doc = gateway_doc(tmp_path, gw, broker_port=broker.port, modbus_port=1, public_key=pub)
        doc["update"] = {"releases": str(tmp_path / gw / "releases")}
        if gw == "gw-b":  # only gw-b takes updates; gw-a, the canary, refuses (403)
            doc["update"]["public_key"] = str(release_pub)
        paths[gw] = write(tmp_path, gw, doc)
    remote = Remote(broker.port, tmp_path, key)
    async with agent_with_commands(config_mod.load(paths["gw-a"])), \
            agent_with_commands(config_mod.load(paths["gw-b"])):
        report = await remote.json("update", str(bundle.bundle), "--url", files.url("/b.tgz"),
                                   "--site", "site-a", "--pub", str(release_pub), expect=1)
    assert report["canary"] == "site-a/gw-a" and report["skipped"] == ["site-a/gw-b"], report
    [result] = report["results"]
    assert (result["status"], result["code"]) == ("rejected", 403), result
    assert files.requests == []  # gw-b never asked for the bundle


async def test_a_wrong_bundle_never_leaves_the_operators_machine(tmp_path: Path) -> None:
    bundle, _ = built(tmp_path)
    other = tmp_path / "other.key"
    release.generate_key(other)
    key, _ = command_key(tmp_path)
    remote = Remote(1, tmp_path, key)  # no broker: the check comes before any connection
    code, _, err = await remote("update", str(bundle.bundle), "--url", "http://x/b",
                                "--site", "s", "--pub", str(release.public_path(other)))
    assert code == 2 and "does not verify with this release key" in err, err
    code, _, err = await Remote(1, tmp_path, None)("update", str(bundle.bundle), "--url",
                                                   "http://x/b", "--site", "s")
    assert code == 2 and "update.install must be signed" in err, err


async def test_staged_update_of_a_release_build_bundle_through_a_real_agent(
        tmp_path: Path, broker: Mosquitto, files: Files, monkeypatch: pytest.MonkeyPatch) -> None:
    bundle, release_pub = built(tmp_path)
    files.routes["/b.tgz"] = bundle.bundle.read_bytes()
    key, pub = command_key(tmp_path)
    doc = gateway_doc(tmp_path, "gw-a", broker_port=broker.port, modbus_port=1, public_key=pub)
    doc["update"] = {"releases": str(tmp_path / "releases"), "public_key": str(release_pub),
                     "health_within": "60s"}
    config = config_mod.load(write(tmp_path, "gw-a", doc))
    remote = Remote(broker.port, tmp_path, key)
    async with agent_with_commands(config) as (agent, _):
        proc = await remote.start("update", str(bundle.bundle), "--url", files.url("/b.tgz"),
                                  "--site", "site-a", "--pub", str(release_pub), "--json")
        await asyncio.wait_for(agent.restart_requested.wait(), 90)  # installed, switched
    # The agent restarted on 9.9.9: played here by this process, whose installed version (and
    # the version its birth announces) is the one fact faked.
    monkeypatch.setattr(update_trial, "running_version", lambda: "9.9.9")
    monkeypatch.setattr(supervisor, "__version__", "9.9.9")
    async with agent_with_commands(config):
        out, err = await asyncio.wait_for(proc.communicate(), 90)
    assert proc.returncode == 0, (out, err)
    report = json.loads(out)
    assert report["ok"] and report["canary"] == "site-a/gw-a" and report["version"] == "9.9.9"
    [result] = report["results"]
    assert result["status"] == "succeeded" and result["answers"] == 2, result  # in_progress first
    assert report["canary_health"] == []
    assert update_trial.AgentRelease(config.update.releases).pending() is None
    assert files.requests == ["/b.tgz"]
