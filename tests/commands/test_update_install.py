"""`update.install` end to end: signed commands through the real CommandHandler (and through a
real mosquitto), a real HTTP server, real release signatures, a real venv + pip install of a
bundle built here, the symlink switch, and the trial: confirmed when the broker takes the birth,
rolled back otherwise, with the outcome as the command's final answer on cmd/res and on evt."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from agent.config import loader as config_mod
from agent.commands import signing
from agent.runtime import supervisor
from agent.lifecycle import update
from agent.lifecycle import update_trial
from agent.sdk.clock import SystemClock
from agent.commands import CommandHandler
from tests.agent.test_update import (BATIGATE, Files, bundle, fake_release, files, release_sig,
                                     release_wheels, run_cli)
from tests.broker import Mosquitto
from tests.commands.conftest import GATEWAY, config_doc, request
from tests.commands.mqtt_backend import ROOT, agent_with_commands, backend
from tests.integration.test_schemas import assert_valid
from tests.observer import observing

__all__ = ["files"]  # the fixture, imported so that pytest finds it here


@pytest.fixture
def release_key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


def make_config(tmp_path: Path, command_key: Ed25519PrivateKey | None,
                release_key: Ed25519PrivateKey | None, *, broker_port: int = 1) -> Path:
    extra: dict[str, Any] = {"update": {"releases": str(tmp_path / "releases"),
                                        "health_within": "30s"}}
    if command_key is not None:
        (tmp_path / "ops.pub").write_bytes(signing.public_pem(command_key))
        extra["commands"] = {"public_key": str(tmp_path / "ops.pub")}
    if release_key is not None:
        (tmp_path / "release.pub").write_bytes(signing.public_pem(release_key))
        extra["update"]["public_key"] = str(tmp_path / "release.pub")
    path = tmp_path / "gateway.yaml"
    path.write_text(yaml.safe_dump(config_doc(tmp_path, broker_port=broker_port, **extra)))
    return path


def install_args(files: Files, data: bytes, key: Ed25519PrivateKey, version: str = "9.9.9",
                 **change: Any) -> dict[str, Any]:
    files.routes["/r.tgz"] = data
    args = {"url": files.url("/r.tgz?X-Token=s3cr3t"), "sha256": hashlib.sha256(data).hexdigest(),
            "size": len(data), "version": version, "sig": release_sig(key, data)}
    args.update(change)
    return args


def signed(key: Ed25519PrivateKey, args: dict[str, Any]) -> dict[str, Any]:
    return signing.sign(request("update.install", args, aud=GATEWAY, by="ops"), key)


async def send(handler: CommandHandler, body: dict[str, Any]) -> dict[str, Any]:
    answer = await handler(json.dumps(body).encode())
    assert answer is not None
    return answer


class Gateway:
    """An agent built from the file (not running) and its command handler."""

    def __init__(self, path: Path) -> None:
        self.agent = supervisor.Agent(config_mod.load(path), SystemClock())
        self.handler = CommandHandler(self.agent)
        self.releases = self.agent.config.update.releases

    def unchanged(self, current: str = "1.0") -> None:
        """Nothing switched, nothing left behind, no restart."""
        assert os.readlink(self.releases / "current") == current
        assert sorted(p.name for p in self.releases.iterdir()) == [current, "current"]
        assert update_trial.AgentRelease(self.releases).pending() is None
        assert not self.agent.restart_requested.is_set()

    def evt(self, kind: str) -> list[dict[str, Any]]:
        self.agent.outbox.commit()
        return [m.fields() for m in self.agent.outbox.peek(1000)
                if m.topic == "evt" and m.fields()["type"] == kind]


@contextlib.contextmanager
def gateway(path: Path, current: str | None = "1.0"):  # noqa: ANN201
    gw = Gateway(path)
    if current is not None:
        fake_release(gw.releases, current)
        os.symlink(current, gw.releases / "current")
    try:
        yield gw
    finally:
        gw.agent.outbox.close()


async def test_unsigned_unkeyed_and_rootfs_requests_are_refused_before_any_download(
        tmp_path: Path, files: Files, private_key: Ed25519PrivateKey,
        release_key: Ed25519PrivateKey) -> None:
    args = install_args(files, bundle("9.9.9"), release_key)
    with gateway(make_config(tmp_path, None, release_key)) as gw:  # commands are not signed here
        answer = await send(gw.handler, request("update.install", args))
        assert (answer["status"], answer["code"]) == ("rejected", 401), answer
        assert "must be a signed command" in answer["error"]
        gw.unchanged()
    with gateway(make_config(tmp_path, private_key, release_key), current=None) as gw:
        answer = await send(gw.handler, request("update.install", args))  # unsigned
        assert (answer["status"], answer["code"]) == ("rejected", 401), answer
        answer = await send(gw.handler, signed(private_key, {**args, "kind": "rootfs"}))
        assert (answer["status"], answer["code"]) == ("rejected", 501), answer
        assert "kind rootfs needs RAUC on the gateway" in answer["error"]  # no RAUC service here
    with gateway(make_config(tmp_path, private_key, None), current=None) as gw:
        answer = await send(gw.handler, signed(private_key, args))
        assert (answer["status"], answer["code"]) == ("rejected", 403), answer
        assert "update.public_key" in answer["error"]
    assert files.requests == []


async def test_a_bad_release_signature_is_rejected_before_any_download(
        tmp_path: Path, files: Files, private_key: Ed25519PrivateKey,
        release_key: Ed25519PrivateKey) -> None:
    data = bundle("9.9.9")
    with gateway(make_config(tmp_path, private_key, release_key)) as gw:
        forged = install_args(files, data, Ed25519PrivateKey.generate())
        answer = await send(gw.handler, signed(private_key, forged))
        assert (answer["status"], answer["code"]) == ("rejected", 422), answer
        assert "release signature does not verify" in answer["error"]
        good = install_args(files, data, release_key)
        other = hashlib.sha256(b"other").hexdigest()  # the signature no longer covers the hash
        answer = await send(gw.handler, signed(private_key, {**good, "sha256": other}))
        assert answer["code"] == 422, answer
        gw.unchanged()
    assert files.requests == []


async def test_a_wrong_hash_or_size_fails_and_nothing_is_switched(
        tmp_path: Path, files: Files, private_key: Ed25519PrivateKey,
        release_key: Ed25519PrivateKey) -> None:
    data = bundle("9.9.9")
    with gateway(make_config(tmp_path, private_key, release_key)) as gw:
        # Signed by the release key, but the server hands out another file of the same size.
        args = install_args(files, data, release_key)
        files.routes["/r.tgz"] = bytes(len(data))
        answer = await send(gw.handler, signed(private_key, args))
        assert (answer["status"], answer["code"]) == ("failed", 500), answer
        assert "sha256 mismatch" in answer["error"] and "nothing was changed" in answer["error"]
        assert "s3cr3t" not in json.dumps(answer)
        gw.unchanged()
        files.routes["/r.tgz"] = data
        wrong = dict(args, size=len(data) + 1, sig=args["sig"])
        answer = await send(gw.handler, signed(private_key, wrong))
        assert answer["status"] == "failed" and "the command says" in answer["error"], answer
        gw.unchanged()
        assert files.requests == ["/r.tgz?X-Token=s3cr3t"] * 2


async def test_a_good_bundle_is_installed_switched_with_previous_kept_and_restarts(
        tmp_path: Path, files: Files, private_key: Ed25519PrivateKey,
        release_key: Ed25519PrivateKey) -> None:
    config = make_config(tmp_path, private_key, release_key)
    with gateway(config) as gw:
        same = install_args(files, bundle(update_trial.running_version()), release_key,
                            version=update_trial.running_version())
        answer = await send(gw.handler, signed(private_key, same))
        assert answer["status"] == "succeeded" and answer["result"]["changed"] is False
        body = signed(private_key, install_args(files, bundle("9.9.9"), release_key))
        before = time.time()
        answer = await send(gw.handler, body)
        assert (answer["status"], answer["code"]) == ("in_progress", 202), answer
        assert answer["result"]["previous"] == "1.0" and answer["result"]["wheels"] == 2
        assert os.readlink(gw.releases / "current") == "9.9.9"
        assert os.readlink(gw.releases / "previous") == "1.0"
        assert sorted(p.name for p in gw.releases.iterdir()) == [
            "1.0", "9.9.9", "current", "previous", "trial.json"]  # no staging left
        trial = update_trial.AgentRelease(gw.releases).pending()
        assert trial is not None and (trial.cmd_id, trial.version) == (body["id"], "9.9.9")
        assert before + 30 <= trial.deadline <= time.time() + 30
        await asyncio.wait_for(gw.agent.restart_requested.wait(), 3)
        again = await send(gw.handler, signed(private_key, install_args(
            files, bundle("9.9.10"), release_key, version="9.9.10")))
        assert again["code"] == 409 and "on trial" in again["error"]
    # What systemd starts next: the built-in agent, which hands over to the new release.
    ran = run_cli(config)
    assert ran.returncode == 0, ran.stderr
    started = json.loads(ran.stdout)
    assert started["argv"] == ["run", "--config", str(config)] and started["dep"] == "fakedep"
    assert Path(started["prefix"]) == tmp_path / "releases" / "9.9.9"


async def test_over_mqtt_a_release_build_bundle_confirms_itself_and_the_answer_becomes_succeeded(
        tmp_path: Path, broker: Mosquitto, files: Files, private_key: Ed25519PrivateKey,
        monkeypatch: pytest.MonkeyPatch) -> None:
    # The release manager's side: `batigate release build` with a new key, as the README says.
    built = subprocess.run([str(BATIGATE), "release", "build",
                            str(release_wheels("9.9.9", tmp_path / "wheels")),
                            "--key", str(tmp_path / "release.key"), "--new-key",
                            "--out", str(tmp_path / "dist"),
                            "--url", files.url("/r.tgz?X-Token=s3cr3t"), "--json"],
                           capture_output=True, text=True, timeout=60)
    assert built.returncode == 0, built.stderr
    made = json.loads(built.stdout)
    files.routes["/r.tgz"] = Path(made["bundle"]).read_bytes()
    path = make_config(tmp_path, private_key, None, broker_port=broker.port)
    doc = yaml.safe_load(path.read_text())
    doc["update"]["public_key"] = made["public_key"]
    path.write_text(yaml.safe_dump(doc))
    config = config_mod.load(path)
    body = signed(private_key, made["update_install"])
    async with observing(broker.port, f"{ROOT}/#", client_id="update-obs") as observer:
        async with agent_with_commands(config) as (agent, _), backend(broker.port) as peer:
            await peer.ask(request("ping"))  # subscribed
            await peer.send(json.dumps(body).encode())
            (_, first, _), = await peer.wait_for(body["id"], timeout=60)
            assert first["status"] == "in_progress", first
            await asyncio.wait_for(agent.restart_requested.wait(), 3)
        # The agent restarted on 9.9.9: played here by this process, whose installed version is
        # the one fact faked. Its command handler's own health gate confirms the release.
        monkeypatch.setattr(update_trial, "running_version", lambda: "9.9.9")
        async with agent_with_commands(config) as (agent, _), backend(broker.port) as peer:
            await observer.wait_for(lambda ms: any(
                m.topic.endswith("/cmd/res") and m.body.get("id") == body["id"]
                and m.body["status"] == "succeeded" for m in ms))
            assert update_trial.AgentRelease(config.update.releases).pending() is None
            assert not agent.restart_requested.is_set()
            await peer.send(json.dumps(body).encode())  # the backend asks again: cached answer
            (_, replay, _), = await peer.wait_for(body["id"])
            assert replay["replayed"] is True and replay["status"] == "succeeded"
            assert replay["result"] == {"version": "9.9.9", "previous": sys.prefix}
        await observer.wait_for(lambda ms: any(m.body.get("type") == "update.succeeded" and
                                               m.body["cmd"] == body["id"] for m in ms))
    event = next(m.body for m in observer.messages if m.body.get("type") == "update.succeeded")
    assert_valid("evt.json", event)


async def test_a_release_that_never_reaches_the_broker_is_rolled_back_and_reported_later(
        tmp_path: Path, private_key: Ed25519PrivateKey, monkeypatch: pytest.MonkeyPatch) -> None:
    server = Mosquitto(tmp_path)  # not started yet: the broker is down during the trial
    path = make_config(tmp_path, private_key, None, broker_port=server.port)
    with gateway(path) as gw:
        fake_release(gw.releases, "2.0")
        update_trial.AgentRelease(gw.releases).begin(update_trial.Release(
            cmd_id="up-1", version="2.0", release="2.0", previous="1.0",
            deadline=time.time() + 0.5))
        update.set_link(gw.releases / "current", "2.0")
        monkeypatch.setattr(update_trial, "running_version", lambda: "2.0")
        await asyncio.wait_for(gw.agent.trials.run(), 5)
        assert os.readlink(gw.releases / "current") == "1.0"
        assert update_trial.AgentRelease(gw.releases).pending() is None
        await asyncio.wait_for(gw.agent.restart_requested.wait(), 3)
        assert update_trial.AgentRelease(gw.releases).take_outcome() is not None  # kept for the next agent
    server.start()
    try:
        config = config_mod.load(path)
        # The previous release starts and reports the outcome once connected.
        async with observing(server.port, f"{ROOT}/cmd/res", client_id="update-obs") as observer, \
                agent_with_commands(config):
            await observer.wait_for(lambda ms: any(m.body.get("id") == "up-1" for m in ms))
            final, = [m.body for m in observer.messages if m.body.get("id") == "up-1"]
            assert (final["status"], final["code"]) == ("failed", 500), final
            assert "rolled back: not healthy in time" in final["error"]
            assert final["result"] == {"version": "2.0", "previous": "1.0"}
            assert update_trial.AgentRelease(config.update.releases).take_outcome() is None
    finally:
        server.stop()


async def test_an_agent_that_is_not_the_release_on_trial_puts_the_links_back_and_stays(
        tmp_path: Path, private_key: Ed25519PrivateKey, monkeypatch: pytest.MonkeyPatch) -> None:
    with gateway(make_config(tmp_path, private_key, None)) as gw:
        update_trial.AgentRelease(gw.releases).begin(update_trial.Release(
            cmd_id="up-2", version="2.0", release="2.0", previous="1.0",
            deadline=time.time() + 600))
        monkeypatch.setattr(update_trial, "running_version", lambda: "1.0")
        watcher = asyncio.ensure_future(gw.agent.trials.run())
        try:
            for _ in range(100):
                if update_trial.AgentRelease(gw.releases).pending() is None:
                    break
                await asyncio.sleep(0.02)
            assert os.readlink(gw.releases / "current") == "1.0"
            [event] = gw.evt("update.rolled_back")
            assert event["cmd"] == "up-2" and "not 2.0" in event["reason"]
            await asyncio.sleep(1.2)
            assert not gw.agent.restart_requested.is_set()
        finally:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher


async def test_an_older_version_needs_allow_downgrade_in_the_signed_command(
        tmp_path: Path, files: Files, private_key: Ed25519PrivateKey,
        release_key: Ed25519PrivateKey) -> None:
    """Issue #16, finding 13: the release signature covers the bytes, not a version policy."""
    with gateway(make_config(tmp_path, private_key, release_key)) as gw:
        older = install_args(files, bundle("0.0.1"), release_key, version="0.0.1")
        answer = await send(gw.handler, signed(private_key, older))
        assert (answer["status"], answer["code"]) == ("rejected", 422), answer
        assert "older than the running" in answer["error"] and "allow_downgrade" in answer["error"]
        gw.unchanged()
        assert files.requests == []  # refused before any download
        answer = await send(gw.handler, signed(private_key, {**older, "allow_downgrade": True}))
        assert (answer["status"], answer["code"]) == ("in_progress", 202), answer
        assert os.readlink(gw.releases / "current") == "0.0.1"


async def test_the_url_credentials_are_in_no_audit_answer_nor_in_the_outbox_file(
        tmp_path: Path, files: Files, private_key: Ed25519PrivateKey,
        release_key: Ed25519PrivateKey) -> None:
    """Issue #16, finding 10: user:password@ and query tokens are masked before anything is
    stored, audited or answered."""
    with gateway(make_config(tmp_path, private_key, release_key)) as gw:
        args = install_args(files, bundle("9.9.9"), release_key)
        args["url"] = args["url"].replace("http://", "http://deploy:pa55word@")
        files.routes["/r.tgz"] = b"not the bundle"  # it fails: the error names the URL
        answer = await send(gw.handler, signed(private_key, args))
        assert answer["status"] == "failed", answer
        trail = await send(gw.handler, signing.sign(request(
            "audit.get", {"lines": 10}, aud=GATEWAY), private_key))
        assert trail["status"] == "succeeded", trail
        text = json.dumps(answer) + json.dumps(trail)
        entry = next(e for e in trail["result"]["entries"] if e["op"] == "update.install")
        assert "X-Token=***" in entry["args"] and "***@127.0.0.1" in entry["args"]
        gw.agent.outbox.commit()
    stored = b"".join(p.read_bytes() for p in tmp_path.glob("outbox.db*"))
    for secret in ("s3cr3t", "pa55word"):
        assert secret not in text and secret.encode() not in stored
