"""`batigate remote` over mutual TLS: the operator's certificate against a real mosquitto that
requires client certificates and confines each identity by ACL (tests/provisioning/pki.py). The
operations team's identity (CN backend-01) may read and command every gateway; a gateway's own
certificate cannot command another gateway (the broker never delivers it: no answer, exit 1)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from agent.config import loader as config_mod
from agent.remote import commands
from tests.commands.mqtt_backend import agent_with_commands
from tests.integration.test_mtls import gateway_config
from tests.provisioning.pki import (BACKEND, SITE, Pki, TlsMosquitto, pki,  # noqa: F401
                                    tls_broker)
from tests.remote.test_remote_cli import Remote

pytestmark = pytest.mark.timeout(90)


class TlsRemote(Remote):
    def __init__(self, port: int, home: Path, key: Path, pki: Pki, cn: str) -> None:
        super().__init__(port, home, key)
        self.cert, self.tls_key = pki.client(cn)
        self.ca = pki.ca_file

    async def start(self, *args: str):  # type: ignore[no-untyped-def]
        return await super().start("--tls", "--ca", str(self.ca), "--cert", str(self.cert),
                                   "--key", str(self.tls_key), *args)


async def test_remote_over_mutual_tls_and_the_acl(tmp_path: Path, pki: Pki,
                                                  tls_broker: TlsMosquitto) -> None:
    key = tmp_path / "ops.key"
    pub = commands.generate_key(key)
    cert, tls_key = pki.client("gw-a")
    path = gateway_config(tmp_path, pki, tls_broker.port, "gw-a", cert, tls_key)
    doc = path.read_text() + f"commands: {{public_key: {pub}}}\n"
    path.write_text(doc)
    operator = TlsRemote(tls_broker.port, tmp_path, key, pki, BACKEND)
    async with agent_with_commands(config_mod.load(path)):
        done = await operator.json("cmd", f"{SITE}/gw-a", "ping")
        assert done["ok"] and done["signed"], done
        fleet = await operator.json("fleet", "--site", SITE, "--health-wait", "0")
        assert [(r["gateway"], r["online"]) for r in fleet["gateways"]] == [("gw-a", True)]
        # Another gateway's certificate: the broker keeps it out of gw-a's subtree.
        rogue = TlsRemote(tls_broker.port, tmp_path, key, pki, "gw-b")
        code, out, _ = await rogue("cmd", f"{SITE}/gw-a", "ping", "--timeout", "2", "--json")
        assert code == 1 and json.loads(out)["results"][0]["status"] == "no answer", out
    # A client without a certificate is refused at the handshake: a clear error, exit 2.
    code, _, err = await Remote(tls_broker.port, tmp_path, key)("--tls", "--ca", str(pki.ca_file),
                                                                "fleet")
    assert code == 2 and "cannot reach the broker" in err, err
