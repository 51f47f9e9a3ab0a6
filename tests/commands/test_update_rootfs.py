"""`update.install` with `kind: rootfs`, end to end with Debian's real RAUC (tests/commands/
rauc_system.py): signed commands through the real CommandHandler, a real HTTP server, bundles
made by `rauc bundle` and signed by a test CA, `rauc install` over D-Bus into the image's
system.conf (slots as files), U-Boot's environment written by the real fw_setenv, and a real
mosquitto for the birth that commits the trial. The reboot is played (see rauc_system.py)."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from agent.config import loader as config_mod
from agent.lifecycle import update_rootfs, update_trial
from tests.agent.test_update import Files, files
from tests.broker import Mosquitto
from tests.commands import rauc_system
from tests.commands.mqtt_backend import ROOT, agent_with_commands
from tests.commands.test_update_install import (Gateway, install_args, make_config, send,
                                                signed)
from tests.integration.test_schemas import assert_valid
from tests.observer import observing

__all__ = ["files"]  # the fixture, imported so that pytest finds it here

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def release_key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


@pytest.fixture
def pki(tmp_path: Path) -> dict[str, Path]:
    rauc_system.require_tools()
    return {"release": rauc_system.make_ca(tmp_path / "pki-release", "batigate"),
            "foreign": rauc_system.make_ca(tmp_path / "pki-foreign", "foreign")}


@pytest.fixture
def rauc(tmp_path: Path, pki: dict[str, Path], monkeypatch: pytest.MonkeyPatch
         ) -> Iterator[rauc_system.Rauc]:
    system = rauc_system.Rauc(tmp_path / "rauc", pki["release"] / "ca.pem")
    try:
        system.start()
        for name, value in system.client_env.items():  # the agent's `rauc` finds this service
            monkeypatch.setenv(name, value)
        yield system
    finally:
        system.close()


def rootfs_config(tmp_path: Path, command_key: Ed25519PrivateKey,
                  release_key: Ed25519PrivateKey, broker_port: int) -> Path:
    path = make_config(tmp_path, command_key, release_key, broker_port=broker_port)
    doc = yaml.safe_load(path.read_text())
    doc["update"]["reboot_request"] = str(tmp_path / "run" / "reboot")
    (tmp_path / "run").mkdir(exist_ok=True)  # the unit's RuntimeDirectory
    path.write_text(yaml.safe_dump(doc))
    return path


async def install(tmp_path: Path, files: Files, command_key: Ed25519PrivateKey,
                  release_key: Ed25519PrivateKey, bundle: Path, port: int
                  ) -> tuple[Path, dict[str, Any], dict[str, Any]]:
    """Send the signed rootfs update.install to a gateway built from the file; returns the
    config, the command and its answer."""
    path = rootfs_config(tmp_path, command_key, release_key, port)
    body = signed(command_key, install_args(files, bundle.read_bytes(), release_key,
                                            version="2.0.0", kind="rootfs"))
    gw = Gateway(path)
    try:
        answer = await send(gw.handler, body)
    finally:
        gw.agent.outbox.close()
    return path, body, answer


def shorten_trial(config_path: Path, seconds: float) -> None:
    """The config's health_within has a 30 s floor; the note written at install is cut here."""
    releases = config_mod.load(config_path).update.releases
    note = json.loads((releases / update_rootfs.TRIAL).read_text())
    note["health_within"] = seconds
    (releases / update_rootfs.TRIAL).write_text(json.dumps(note))


async def test_a_signed_system_bundle_is_installed_booted_on_trial_and_committed_after_birth(
        tmp_path: Path, broker: Mosquitto, files: Files, private_key: Ed25519PrivateKey,
        release_key: Ed25519PrivateKey, pki: dict[str, Path], rauc: rauc_system.Rauc) -> None:
    bundle = rauc_system.make_bundle(tmp_path, "2.0.0", pki["release"])
    path, body, answer = await install(tmp_path, files, private_key, release_key, bundle,
                                       broker.port)
    assert (answer["status"], answer["code"]) == ("in_progress", 202), answer
    assert answer["result"] == {"version": "2.0.0", "slot": "B", "previous": "A",
                                "health_within": 30.0, "reboot": True}
    # RAUC wrote slot B and made it primary through U-Boot's environment; A is untouched.
    assert rauc.version_in("B") == "2.0.0" and rauc.version_in("A") is None
    assert rauc.env() == {"BOOT_ORDER": "B A", "BOOT_A_LEFT": "3", "BOOT_B_LEFT": "3"}
    assert "installed in slot B" in (tmp_path / "run" / "reboot").read_text()
    config = config_mod.load(path)
    assert update_rootfs.pending(config.update.releases).slot == "B"
    assert not (config.update.releases / "staging").exists()  # the bundle is not kept

    assert rauc.reboot() == "B"
    assert rauc.env()["BOOT_B_LEFT"] == "2"  # one attempt used: not committed yet
    (tmp_path / "run" / "reboot").unlink()  # /run does not survive a reboot
    async with observing(broker.port, f"{ROOT}/#", client_id="rootfs-obs") as observer:
        async with agent_with_commands(config) as (agent, _):
            await observer.wait_for(lambda ms: any(
                m.topic.endswith("/cmd/res") and m.body.get("id") == body["id"]
                and m.body["status"] == "succeeded" for m in ms), timeout=20)
            assert not agent.restart_requested.is_set()
        await observer.wait_for(lambda ms: any(m.body.get("type") == "update.succeeded"
                                               for m in ms))
    final = next(m.body for m in observer.messages
                 if m.topic.endswith("/cmd/res") and m.body.get("id") == body["id"])
    assert final["result"] == {"version": "2.0.0", "previous": "slot A"}
    assert_valid("evt.json", next(m.body for m in observer.messages
                                  if m.body.get("type") == "update.succeeded"))
    # Committed: mark-good gave B its attempts back, and B stays first.
    assert rauc.env() == {"BOOT_ORDER": "B A", "BOOT_A_LEFT": "3", "BOOT_B_LEFT": "3"}
    assert rauc.boot_status()["B"] == "good"
    assert update_rootfs.pending(config.update.releases) is None
    assert not (tmp_path / "run" / "reboot").exists()
    assert rauc.reboot() == "B"  # and the next boot is B again


async def test_a_bundle_signed_by_another_ca_is_refused_by_rauc_and_nothing_changes(
        tmp_path: Path, files: Files, private_key: Ed25519PrivateKey,
        release_key: Ed25519PrivateKey, pki: dict[str, Path], rauc: rauc_system.Rauc) -> None:
    # The release key signed its sha256 (the agent's check passes): RAUC's keyring refuses it.
    bundle = rauc_system.make_bundle(tmp_path, "2.0.0", pki["foreign"])
    path, _, answer = await install(tmp_path, files, private_key, release_key, bundle, 1)
    assert (answer["status"], answer["code"]) == ("failed", 500), answer
    assert "rauc refused the bundle: signature verification failed" in answer["error"], answer
    assert "nothing was changed" in answer["error"]
    assert rauc.env() == {"BOOT_ORDER": "A B", "BOOT_A_LEFT": "3", "BOOT_B_LEFT": "3"}
    assert rauc.version_in("B") is None
    assert not (tmp_path / "run" / "reboot").exists()
    releases = config_mod.load(path).update.releases
    assert update_rootfs.pending(releases) is None
    assert update_trial.AgentRelease(releases).take_outcome() is None
    # A bundle for another device is refused the same way (RAUC's compatible check).
    other = rauc_system.make_bundle(tmp_path / "other", "2.0.1", pki["release"],
                                    compatible="someone-else")
    _, _, answer = await install(tmp_path / "other", files, private_key, release_key, other, 1)
    assert (answer["status"], answer["code"]) == ("failed", 500), answer
    assert "Compatible mismatch" in answer["error"], answer
    assert rauc.env()["BOOT_ORDER"] == "A B"


async def test_a_system_without_birth_in_time_is_marked_bad_and_the_old_slot_reports_it(
        tmp_path: Path, files: Files, private_key: Ed25519PrivateKey,
        release_key: Ed25519PrivateKey, pki: dict[str, Path], rauc: rauc_system.Rauc) -> None:
    server = Mosquitto(tmp_path)  # not started: the new system cannot reach the broker
    bundle = rauc_system.make_bundle(tmp_path, "2.0.0", pki["release"])
    path, body, answer = await install(tmp_path, files, private_key, release_key, bundle,
                                       server.port)
    assert answer["status"] == "in_progress", answer
    shorten_trial(path, 1.0)
    assert rauc.reboot() == "B"
    (tmp_path / "run" / "reboot").unlink()
    gw = Gateway(path)
    try:
        await asyncio.wait_for(gw.agent.trials.run(), 15)
        # RAUC marked B bad: U-Boot will not start it again; a reboot is asked for.
        assert rauc.env()["BOOT_B_LEFT"] == "0" and rauc.env()["BOOT_ORDER"].split()[0] == "A"
        assert rauc.boot_status()["B"] == "bad"
        assert "rolled back" in (tmp_path / "run" / "reboot").read_text()
        assert update_rootfs.pending(gw.releases) is None
        outcome = update_trial.AgentRelease(gw.releases).take_outcome()
        assert outcome is not None and outcome["type"] == "update.rolled_back"
    finally:
        gw.agent.outbox.close()

    assert rauc.reboot() == "A"
    server.start()
    try:
        config = config_mod.load(path)
        async with observing(server.port, f"{ROOT}/cmd/res", client_id="rootfs-obs") as observer, \
                agent_with_commands(config):
            await observer.wait_for(lambda ms: any(m.body.get("id") == body["id"] for m in ms))
        final, = [m.body for m in observer.messages if m.body.get("id") == body["id"]]
        assert (final["status"], final["code"]) == ("failed", 500), final
        assert "rolled back: not healthy in time" in final["error"], final
        assert final["result"] == {"version": "2.0.0", "previous": "slot A"}
        assert update_trial.AgentRelease(config.update.releases).take_outcome() is None
    finally:
        server.stop()


async def test_a_system_that_never_comes_up_runs_out_of_attempts_and_the_old_slot_reports_it(
        tmp_path: Path, files: Files, private_key: Ed25519PrivateKey,
        release_key: Ed25519PrivateKey, pki: dict[str, Path], rauc: rauc_system.Rauc) -> None:
    bundle = rauc_system.make_bundle(tmp_path, "2.0.0", pki["release"])
    path, body, _ = await install(tmp_path, files, private_key, release_key, bundle, 1)
    # Slot B panics or hangs three times (no agent ever runs there): U-Boot goes back to A.
    assert [rauc.reboot() for _ in range(4)] == ["B", "B", "B", "A"]
    (tmp_path / "run" / "reboot").unlink()
    gw = Gateway(path)
    watcher = asyncio.ensure_future(gw.agent.trials.run())
    try:
        for _ in range(200):  # the outcome is durable at once; its answer waits for a broker
            if update_rootfs.pending(gw.releases) is None:
                break
            await asyncio.sleep(0.05)
        rolled, = [m.fields() for m in _committed(gw) if m.topic == "evt"
                   and m.fields()["type"] == "update.rolled_back"]
        assert rolled["cmd"] == body["id"] and "did not come up" in rolled["reason"], rolled
        assert "slot A" in rolled["reason"]
        assert update_rootfs.pending(gw.releases) is None
        assert not (tmp_path / "run" / "reboot").exists()  # no reboot asked: A stays
        assert rauc.env()["BOOT_B_LEFT"] == "0"
    finally:
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher
        gw.agent.outbox.close()


def _committed(gw: Gateway) -> list[Any]:
    gw.agent.outbox.commit()
    return list(gw.agent.outbox.peek(1000))
