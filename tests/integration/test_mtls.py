"""Mutual TLS against a real mosquitto with per-gateway pattern ACLs (mosquitto 2.0).

- a gateway connects with its own certificate;
- it can neither publish nor subscribe under another gateway's root (checked by delivery:
  mosquitto grants the SUBACK and filters at delivery);
- an expired or foreign certificate, and a broker certificate with the wrong name, are refused,
  and `batigate selftest` says which and why;
- certificate rotation by command: renew, install after validation, restart on the new identity;
  a bad certificate changes nothing;
- the private key never appears in logs, command answers or CLI output.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import logging
import ssl
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiomqtt
import pytest
import yaml
from click.testing import CliRunner

from agent.config import loader as config_mod
from agent.runtime import supervisor
from agent.cli.main import main
from agent.config.loader import Config
from provisioning import labca
from tests.cli.helpers import short_socket
from tests.integration.test_schemas import assert_valid
from tests.provisioning.pki import (BACKEND, NAMESPACE, SITE, Pki, TlsMosquitto, pki,  # noqa: F401
                                    tls_broker)

pytestmark = pytest.mark.timeout(60)


def gateway_config(tmp_path: Path, pki: Pki, broker_port: int, gw: str, cert: Path, key: Path,
                   host: str = "127.0.0.1") -> Path:
    doc = {
        "gateway": {"id": gw, "site": SITE},
        "mqtt": {"host": host, "port": broker_port, "reconnect_max": "1s",
                 "tls": {"ca": str(pki.ca_file), "cert": str(cert), "key": str(key)}},
        "buffer": {"path": str(tmp_path / f"{gw}.db"), "commit_interval": "200ms"},
        "health": {"interval": "1h"},
        "control": {"socket": str(short_socket())},
    }
    path = tmp_path / f"{gw}.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def client(pki: Pki, port: int, cert: Path, key: Path, identifier: str) -> aiomqtt.Client:
    context = ssl.create_default_context(cafile=str(pki.ca_file))
    context.load_cert_chain(str(cert), str(key))
    return aiomqtt.Client("127.0.0.1", port, identifier=identifier, tls_context=context,
                          protocol=aiomqtt.ProtocolVersion.V5)


async def collect(mqtt: aiomqtt.Client, into: list[tuple[str, Any]]) -> None:
    async for message in mqtt.messages:
        assert isinstance(message.payload, bytes)
        try:
            body: Any = json.loads(message.payload)
        except ValueError:
            body = message.payload
        into.append((str(message.topic), body))


async def wait_until(check: Any, timeout: float = 10.0) -> None:
    async with asyncio.timeout(timeout):
        while not check():
            await asyncio.sleep(0.05)


@contextlib.asynccontextmanager
async def agent_running(config: Config) -> AsyncIterator[tuple[supervisor.Agent, asyncio.Task]]:
    stop = asyncio.Event()
    ready: asyncio.Future[supervisor.Agent] = asyncio.get_running_loop().create_future()
    task = asyncio.ensure_future(supervisor.serve(config, shutdown_trigger=stop.wait,
                                                  ready=ready.set_result))
    try:
        yield await asyncio.wait_for(asyncio.shield(ready), 10), task
    finally:
        stop.set()
        await asyncio.wait_for(task, 15)


def selftest(path: Path) -> dict[str, dict[str, str]]:
    result = CliRunner().invoke(main, ["selftest", "--timeout", "3", "--json", "--config",
                                       str(path)])
    return {c["name"]: c for c in json.loads(result.stdout)["checks"]}


async def test_gateway_connects_and_acls_confine_it_to_its_root(
        tmp_path: Path, pki: Pki, tls_broker: TlsMosquitto) -> None:
    port = tls_broker.port
    backend_cert, backend_key = pki.client(BACKEND)
    a_cert, a_key = pki.client("gw-a")
    b_cert, b_key = pki.client("gw-b")
    seen: list[tuple[str, Any]] = []
    b_seen: list[tuple[str, Any]] = []
    a_seen: list[tuple[str, Any]] = []
    async with client(pki, port, backend_cert, backend_key, BACKEND) as backend, \
            client(pki, port, b_cert, b_key, "gw-b-test") as gw_b:
        await backend.subscribe(f"{NAMESPACE}/#", qos=1)
        await gw_b.subscribe(f"{NAMESPACE}/{SITE}/gw-b/#", qos=1)
        tasks = [asyncio.create_task(collect(backend, seen)),
                 asyncio.create_task(collect(gw_b, b_seen))]
        config = config_mod.load(gateway_config(tmp_path, pki, port, "gw-a", a_cert, a_key))
        async with agent_running(config) as (agent, _):
            await asyncio.wait_for(agent.uplink.connected.wait(), 10)
            await wait_until(lambda: any(t == f"{NAMESPACE}/{SITE}/gw-a/state" for t, _ in seen))

        # gw-a, with its valid certificate, tries gw-b's root both ways
        async with client(pki, port, a_cert, a_key, "gw-a-rogue") as rogue:
            await rogue.subscribe(f"{NAMESPACE}/+/gw-b/#", qos=1)
            tasks.append(asyncio.create_task(collect(rogue, a_seen)))
            await rogue.publish(f"{NAMESPACE}/{SITE}/gw-b/state", b'{"online": false}', qos=1)
            await rogue.publish(f"{NAMESPACE}/{SITE}/gw-a/evt", b'{"own": true}', qos=1)
            await backend.publish(f"{NAMESPACE}/{SITE}/gw-b/cmd/req", b'{"for": "gw-b"}', qos=1)
            await wait_until(lambda: any(t.endswith("gw-b/cmd/req") for t, _ in b_seen))
            await wait_until(lambda: any(t.endswith("gw-a/evt") for t, _ in seen))
            await asyncio.sleep(0.3)
        for task in tasks:
            task.cancel()
    assert not any(t == f"{NAMESPACE}/{SITE}/gw-b/state" for t, _ in seen + b_seen), \
        "a gateway published under another gateway's root"
    assert a_seen == [], "a gateway received another gateway's messages"
    assert "u'gw-a'" in tls_broker.log()  # the user name is the certificate CN


async def test_expired_and_foreign_certificates_are_refused_with_a_clear_message(
        tmp_path: Path, pki: Pki, tls_broker: TlsMosquitto) -> None:
    expired = pki.client("gw-old", not_before=dt.datetime.now(dt.UTC) - dt.timedelta(days=30),
                         days=10)
    foreign = pki.client("gw-alien", ca=pki.foreign)
    for (gw, (cert, key)), words in ((("gw-old", expired), "expired"),
                                     (("gw-alien", foreign), "does not chain to the configured CA")):
        path = gateway_config(tmp_path, pki, tls_broker.port, gw, cert, key)
        async with agent_running(config_mod.load(path)) as (agent, _):
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(agent.uplink.connected.wait(), 1.5)
        checks = await asyncio.to_thread(selftest, path)
        assert checks["broker"]["result"] == "fail"
        assert "the broker refused this gateway's certificate" in checks["broker"]["detail"]
        assert words in checks["broker"]["detail"], checks["broker"]
        assert checks["certificate"]["result"] == "fail"


async def test_a_broker_certificate_for_another_name_is_refused(
        tmp_path: Path, pki: Pki) -> None:
    folder = tmp_path / "wrong"
    folder.mkdir()
    broker = TlsMosquitto(folder, pki, server_names=["wrong.example"])
    broker.start()
    try:
        cert, key = pki.client("gw-a")
        path = gateway_config(tmp_path, pki, broker.port, "gw-a", cert, key)
        async with agent_running(config_mod.load(path)) as (agent, _):
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(agent.uplink.connected.wait(), 1.5)
            assert "certificate" in (agent.uplink.last_error or "").lower()
        checks = await asyncio.to_thread(selftest, path)
        assert checks["broker"]["result"] == "fail"
        assert "does not name this host" in checks["broker"]["detail"]
    finally:
        broker.stop()
    # and nothing in the config can switch server verification off
    doc = yaml.safe_load(path.read_text())
    doc["mqtt"]["tls"]["verify"] = False
    path.write_text(yaml.safe_dump(doc))
    with pytest.raises(config_mod.ConfigError, match="unknown key"):
        config_mod.load(path)


async def test_rotation_by_command_and_secrets_stay_secret(
        tmp_path: Path, pki: Pki, tls_broker: TlsMosquitto,
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    port = tls_broker.port
    state = tmp_path / "state"
    state.mkdir()
    cert, key = pki.client("gw-r", folder=state)
    path = gateway_config(tmp_path, pki, port, "gw-r", cert, key)
    doc = yaml.safe_load(path.read_text())
    doc["commands"] = {"unsigned": "allow"}  # a lab: cert.* by anonymous commands (issue #16)
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    config = config_mod.load(path)
    old_serial = labca.x509.load_pem_x509_certificate(cert.read_bytes()).serial_number
    backend_cert, backend_key = pki.client(BACKEND)
    answers: list[tuple[str, Any]] = []
    root = f"{NAMESPACE}/{SITE}/gw-r"

    async def command(backend: aiomqtt.Client, op: str, args: dict[str, Any] | None = None,
                      ) -> dict[str, Any]:
        cmd_id = uuid.uuid4().hex
        body = {"id": cmd_id, "op": op, "args": args or {},
                "exp": int(dt.datetime.now(dt.UTC).timestamp()) + 60}
        await backend.publish(f"{root}/cmd/req", json.dumps(body).encode(), qos=1)
        await wait_until(lambda: any(isinstance(b, dict) and b.get("id") == cmd_id
                                     for t, b in answers if t.endswith("cmd/res")))
        return next(b for t, b in answers if t.endswith("cmd/res") and b.get("id") == cmd_id)

    async with client(pki, port, backend_cert, backend_key, BACKEND) as backend:
        await backend.subscribe(f"{root}/#", qos=1)
        collector = asyncio.create_task(collect(backend, answers))
        async with agent_running(config) as (agent, task):
            await asyncio.wait_for(agent.uplink.connected.wait(), 10)
            # a certificate for the current key (not the renewed one) is refused
            renewed = await command(backend, "cert.renew")
            assert renewed["status"] == "succeeded", renewed
            csr = renewed["result"]["csr"]
            wrong = labca.pem(pki.ca.sign_csr(
                labca.keys.csr_pem(labca.keys.csr(labca.keys.load(key), "gw-r")))).decode()
            refused = await command(backend, "cert.install", {"cert": wrong})
            assert refused["code"] == 422 and "not for this gateway's key" in refused["error"]
            foreign = labca.pem(pki.foreign.sign_csr(csr)).decode()
            refused = await command(backend, "cert.install", {"cert": foreign})
            assert refused["code"] == 422 and "does not chain" in refused["error"]
            assert labca.x509.load_pem_x509_certificate(cert.read_bytes()).serial_number == \
                old_serial  # nothing changed

            good = labca.pem(pki.ca.sign_csr(csr)).decode()
            installed = await command(backend, "cert.install", {"cert": good})
            assert installed["status"] == "in_progress", installed
            restart = await asyncio.wait_for(asyncio.shield(task), 10)
            assert restart is True  # the agent stops for systemd to start it on the new pair
        new_serial = labca.x509.load_pem_x509_certificate(cert.read_bytes()).serial_number
        assert new_serial != old_serial and f"{new_serial:x}" == installed["result"]["serial"]
        async with agent_running(config_mod.load(path)) as (agent, _):
            await asyncio.wait_for(agent.uplink.connected.wait(), 10)  # the new identity works
            # ...so its trial ends: the install's final answer and a `cert.confirmed` event
            await wait_until(lambda: any(
                b.get("id") == installed["id"] and b["status"] == "succeeded"
                for t, b in answers if t.endswith("cmd/res") and isinstance(b, dict)))
            assert any(isinstance(b, dict) and b.get("type") == "cert.confirmed"
                       for t, b in answers if t.endswith("/evt"))
            assert not cert.with_name(cert.name + ".trial").exists()
            health = await command(backend, "health")
            assert health["result"]["cert_days"] > 80
            back = await command(backend, "cert.rollback")
            assert back["status"] == "in_progress"
        collector.cancel()
    assert labca.x509.load_pem_x509_certificate(cert.read_bytes()).serial_number == old_serial

    # the key material never left the key files
    secrets = [line for p in state.glob("*.key*") for line in p.read_text().splitlines()
               if line and "-----" not in line]
    assert secrets
    wire = json.dumps([b for _, b in answers], default=str)
    for secret in secrets:
        assert secret not in caplog.text and secret not in wire


async def test_a_rotated_certificate_that_cannot_connect_is_rolled_back_by_itself(
        tmp_path: Path, pki: Pki, tls_broker: TlsMosquitto) -> None:
    """Proves: a certificate on trial that the broker refuses (here: signed by a foreign CA,
    standing for what a probe cannot see) is replaced by the previous pair at the deadline, with
    no command needed; the agent restarts, connects with the previous pair and reports the
    install as failed, with a `cert.rolled_back` event."""
    from agent.lifecycle import cert_trial  # noqa: PLC0415
    from provisioning import certs  # noqa: PLC0415

    state = tmp_path / "state"
    state.mkdir()
    cert, key = pki.client("gw-t", folder=state)
    good = cert.read_bytes()
    path = gateway_config(tmp_path, pki, tls_broker.port, "gw-t", cert, key)
    # The rotation as cert.install leaves it, but with a certificate the broker refuses.
    pending = certs.pending_key_path(key)
    new_key = labca.keys.generate(pending)
    refused = pki.foreign.sign_csr(labca.keys.csr_pem(labca.keys.csr(new_key, "gw-t")))
    certs.install([refused], cert, key, new_key=True)
    cert_trial.CertTrial(cert, key).begin(cert_trial.Installed(
        cmd_id="rot-1", serial=f"{refused.serial_number:x}", deadline=time.time() + 2))
    backend_cert, backend_key = pki.client(BACKEND)
    seen: list[tuple[str, Any]] = []
    root = f"{NAMESPACE}/{SITE}/gw-t"
    async with client(pki, tls_broker.port, backend_cert, backend_key, BACKEND) as backend:
        await backend.subscribe(f"{root}/#", qos=1)
        collector = asyncio.create_task(collect(backend, seen))
        async with agent_running(config_mod.load(path)) as (agent, task):
            restart = await asyncio.wait_for(asyncio.shield(task), 10)
            assert restart is True and not agent.uplink.connections
        assert cert.read_bytes() == good  # the previous pair is back
        async with agent_running(config_mod.load(path)) as (agent, _):
            await asyncio.wait_for(agent.uplink.connected.wait(), 10)
            await wait_until(lambda: any(isinstance(b, dict) and b.get("id") == "rot-1"
                                         for t, b in seen if t.endswith("cmd/res")))
        collector.cancel()
    final = next(b for t, b in seen if t.endswith("cmd/res") and b.get("id") == "rot-1")
    assert (final["status"], final["op"]) == ("failed", "cert.install"), final
    assert "no broker connection" in final["error"]
    event = next(b for t, b in seen if t.endswith("/evt") and b.get("type") == "cert.rolled_back")
    assert event["cmd"] == "rot-1" and event["serial"] == f"{refused.serial_number:x}"
    assert_valid("evt.json", event)
    assert_valid("cmd-res.json", final)


def test_a_trial_past_its_deadline_is_rolled_back_at_start(tmp_path: Path, pki: Pki) -> None:
    """Proves: an agent that crashed or hung with the new pair finds the previous one back at its
    next start, before it tries to connect (the rollback needs no broker)."""
    from agent.lifecycle import cert_trial  # noqa: PLC0415
    from provisioning import certs  # noqa: PLC0415

    cert, key = pki.client("gw-s", folder=tmp_path)
    good_cert, good_key = cert.read_bytes(), key.read_bytes()
    labca.keys.generate(certs.pending_key_path(key))
    other = pki.foreign.sign_csr(labca.keys.csr_pem(labca.keys.csr(
        labca.keys.load(certs.pending_key_path(key)), "gw-s")))
    certs.install([other], cert, key, new_key=True)
    trial = cert_trial.CertTrial(cert, key)
    trial.begin(cert_trial.Installed(cmd_id="rot-2", serial="1", deadline=time.time() - 1))
    line = trial.check_at_start(now=time.time())
    assert line is not None and "rot-2" in line
    assert (cert.read_bytes(), key.read_bytes()) == (good_cert, good_key)
    assert trial.pending() is None
    outcome = trial.take_outcome()
    assert outcome is not None and outcome["type"] == "cert.rolled_back"
    assert trial.check_at_start(now=time.time()) is None  # once


async def test_an_expiring_certificate_raises_an_event(
        tmp_path: Path, pki: Pki, tls_broker: TlsMosquitto) -> None:
    cert, key = pki.client("gw-e", days=10)
    backend_cert, backend_key = pki.client(BACKEND)
    seen: list[tuple[str, Any]] = []
    async with client(pki, tls_broker.port, backend_cert, backend_key, BACKEND) as backend:
        await backend.subscribe(f"{NAMESPACE}/{SITE}/gw-e/evt", qos=1)
        collector = asyncio.create_task(collect(backend, seen))
        path = gateway_config(tmp_path, pki, tls_broker.port, "gw-e", cert, key)
        async with agent_running(config_mod.load(path)):
            await wait_until(lambda: any(isinstance(b, dict) and b.get("type") == "cert.expiring"
                                         for _, b in seen))
        collector.cancel()
    event = next(b for _, b in seen if b.get("type") == "cert.expiring")
    assert 9 < event["days_left"] <= 10 and event["expired"] is False
