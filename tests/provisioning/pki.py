"""Test PKI and a mutual-TLS mosquitto with per-gateway pattern ACLs (mosquitto 2.0).

Files are written 0644 except keys 0600; the broker runs with `user root` so it can read them
when the tests run as root (mosquitto otherwise drops to its own user before loading the certs).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from provisioning import keys, labca
from tests.broker import Mosquitto

NAMESPACE = "bgw/v1"
SITE = "site-a"
BACKEND = "backend-01"

ACL = f"""\
# the backend sees and commands every gateway
user {BACKEND}
topic readwrite {NAMESPACE}/#

# a gateway reads and writes under its own root only (%u = the certificate CN)
pattern readwrite {NAMESPACE}/+/%u/#
"""


@dataclass
class Pki:
    folder: Path
    ca: labca.LabCA
    foreign: labca.LabCA  # another CA: its certificates must be refused

    @property
    def ca_file(self) -> Path:
        return self.folder / "ca.crt"

    def client(self, cn: str, *, ca: labca.LabCA | None = None, days: float = 90,
               not_before: dt.datetime | None = None, folder: Path | None = None,
               ) -> tuple[Path, Path]:
        """(cert, key) files for `cn`, issued by `ca` (the lab CA by default)."""
        folder = folder or self.folder
        key, cert = (ca or self.ca).issue_client(cn, days=days, not_before=not_before)
        tag = f"{cn}-{cert.serial_number % 10**6}"
        cert_path, key_path = folder / f"{tag}.crt", folder / f"{tag}.key"
        cert_path.write_bytes(labca.pem(cert))
        keys.write_private(key_path, key)
        return cert_path, key_path


def make_pki(folder: Path) -> Pki:
    folder.mkdir(parents=True, exist_ok=True)
    ca, foreign = labca.LabCA.create("test lab CA"), labca.LabCA.create("foreign CA")
    (folder / "ca.crt").write_bytes(ca.cert_pem())
    return Pki(folder, ca, foreign)


class TlsMosquitto(Mosquitto):
    """mosquitto with mTLS: certificate required, CN as user name, pattern ACLs."""

    def __init__(self, workdir: Path, pki: Pki, server_names: list[str] | None = None) -> None:
        key, cert = pki.ca.issue_server(server_names or ["localhost", "127.0.0.1"])
        (workdir / "server.crt").write_bytes(labca.pem(cert))
        keys.write_private(workdir / "server.key", key)
        (workdir / "acl").write_text(ACL)
        super().__init__(workdir, extra_conf=(
            f"cafile {pki.ca_file}\ncertfile {workdir / 'server.crt'}\n"
            f"keyfile {workdir / 'server.key'}\nrequire_certificate true\n"
            f"use_identity_as_username true\nacl_file {workdir / 'acl'}\n"
            "log_type all\nconnection_messages true\n"))

    def log(self) -> str:
        path = self.workdir / "mosquitto.log"
        return path.read_text(errors="replace") if path.exists() else ""


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture
def tls_broker(tmp_path: Path, pki: Pki) -> Iterator[TlsMosquitto]:
    folder = tmp_path / "broker"
    folder.mkdir()
    server = TlsMosquitto(folder, pki)
    server.start()
    yield server
    server.stop()
