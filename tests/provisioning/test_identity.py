"""Key, CSR, certificate checks, install and rollback, and the `provision` commands."""

from __future__ import annotations

import datetime as dt
import json
import stat
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from cryptography import x509
from cryptography.x509.oid import NameOID

from agent.cli.main import main
from provisioning import certs, keys, labca




def _key_body(path: Path) -> list[str]:
    """The base64 lines of a PEM key: none of them may ever show up anywhere."""
    return [line for line in path.read_text().splitlines() if line and "-----" not in line]


def test_key_is_0600_from_creation_and_never_overwritten(tmp_path: Path) -> None:
    path = tmp_path / "gw.key"
    key = keys.generate(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    with pytest.raises(keys.KeyError_, match="exists already"):
        keys.generate(path)
    request = keys.csr(key, "gw-0042")
    assert request.is_signature_valid
    assert request.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "gw-0042"


def test_checks_name_what_is_wrong(tmp_path: Path) -> None:
    now = dt.datetime.now(dt.UTC)
    ca, foreign = labca.LabCA.create(), labca.LabCA.create("foreign")
    key = keys.generate(tmp_path / "k")
    csr = keys.csr_pem(keys.csr(key, "gw-1"))
    good = ca.sign_csr(csr)
    assert certs.check([good], key, [ca.cert], "gw-1", now) is good
    other_key, other = ca.issue_client("gw-1")
    with pytest.raises(certs.CertProblem, match="not for this gateway's key"):
        certs.check([other], key, [ca.cert], "gw-1", now)
    with pytest.raises(certs.CertProblem, match="names 'gw-1', this gateway is 'gw-2'"):
        certs.check([good], key, [ca.cert], "gw-2", now)
    expired = ca.sign_csr(csr, days=1, not_before=now - dt.timedelta(days=5))
    with pytest.raises(certs.CertProblem, match="expired"):
        certs.check([expired], key, [ca.cert], "gw-1", now)
    with pytest.raises(certs.CertProblem, match="does not chain to the configured CA"):
        certs.check([foreign.sign_csr(csr)], key, [ca.cert], "gw-1", now)
    with pytest.raises(labca.CsrRefused, match="not a gateway id"):
        ca.sign_csr(keys.csr_pem(keys.csr(key, "Not An Id")))


def test_install_keeps_the_previous_pair_and_rolls_back(tmp_path: Path) -> None:
    ca = labca.LabCA.create()
    cert_path, key_path = tmp_path / "gw.crt", tmp_path / "gw.key"
    first_key = keys.generate(key_path)
    first = ca.sign_csr(keys.csr_pem(keys.csr(first_key, "gw-1")))
    certs.install([first], cert_path, key_path, new_key=False)
    pending = certs.pending_key_path(key_path)
    second_key = keys.generate(pending)
    second = ca.sign_csr(keys.csr_pem(keys.csr(second_key, "gw-1")))
    certs.install([second], cert_path, key_path, new_key=True)
    assert certs.same_key(x509.load_pem_x509_certificate(cert_path.read_bytes()), second_key)
    assert certs.same_key(second, keys.load(key_path)) and not pending.exists()
    assert stat.S_IMODE(certs.prev_path(key_path).stat().st_mode) == 0o600
    assert certs.rollback(cert_path, key_path)
    assert certs.same_key(x509.load_pem_x509_certificate(cert_path.read_bytes()), first_key)
    assert certs.same_key(first, keys.load(key_path))
    assert not certs.rollback(cert_path, key_path)  # nothing older left


def test_provision_cli_end_to_end_with_the_lab_ca(tmp_path: Path) -> None:
    runner = CliRunner()
    lab = tmp_path / "lab"
    assert runner.invoke(main, ["provision", "lab-ca", "init", str(lab)]).exit_code == 0
    config = tmp_path / "gw.yaml"
    config.write_text(yaml.safe_dump({
        "gateway": {"id": "gw-0042", "site": "s"},
        "mqtt": {"host": "127.0.0.1", "tls": {"ca": str(lab / "ca.crt"),
                                              "cert": str(tmp_path / "gw.crt"),
                                              "key": str(tmp_path / "gw.key")}},
        "buffer": {"path": str(tmp_path / "o.db")}}))
    result = runner.invoke(main, ["provision", "--config", str(config), "--json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert "BEGIN CERTIFICATE REQUEST" in doc["csr_pem"]
    key_lines = _key_body(tmp_path / "gw.key")
    assert not any(line in result.output for line in key_lines)
    again = runner.invoke(main, ["provision", "--config", str(config)])
    assert again.exit_code == 1 and "exists already" in again.output

    signed = tmp_path / "gw.crt.new"
    result = runner.invoke(main, ["provision", "lab-ca", "sign", doc["csr"], "--ca-dir", str(lab),
                                  "-o", str(signed)])
    assert result.exit_code == 0, result.output
    result = runner.invoke(main, ["provision", "install-cert", str(signed), "--config",
                                  str(config)])
    assert result.exit_code == 0, result.output
    assert "gw-0042" in result.output
    show = runner.invoke(main, ["provision", "show", "--json", "--config", str(config)])
    assert show.exit_code == 0 and json.loads(show.stdout)["problems"] == []

    # rotation from the CLI: new key beside the old, installed with its certificate
    result = runner.invoke(main, ["provision", "--renew", "--json", "--config", str(config)])
    assert result.exit_code == 0, result.output
    renewed = json.loads(result.stdout)
    assert renewed["key"].endswith("gw.key.new")
    runner.invoke(main, ["provision", "lab-ca", "sign", renewed["csr"], "--ca-dir", str(lab),
                         "-o", str(signed)])
    result = runner.invoke(main, ["provision", "install-cert", str(signed), "--json",
                                  "--config", str(config)])
    assert json.loads(result.stdout)["rotation"] is True

    # a certificate from another CA is refused, and nothing changes
    foreign = labca.LabCA.create("foreign")
    (tmp_path / "foreign.crt").write_bytes(labca.pem(foreign.sign_csr(
        keys.csr_pem(keys.csr(keys.load(tmp_path / "gw.key"), "gw-0042")))))
    before = (tmp_path / "gw.crt").read_bytes()
    result = runner.invoke(main, ["provision", "install-cert", str(tmp_path / "foreign.crt"),
                                  "--config", str(config)])
    assert result.exit_code == 1 and "does not chain to the configured CA" in result.output
    assert (tmp_path / "gw.crt").read_bytes() == before
    for line in _key_body(tmp_path / "gw.key"):
        assert line not in result.output
