"""First boot against a fake FAT directory and config directory (real files, real keys)."""

from __future__ import annotations

import datetime as dt
import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from agent.lifecycle import firstboot
from agent.lifecycle.firstboot import Layout


@pytest.fixture
def layout(tmp_path: Path) -> Layout:
    (tmp_path / "fat").mkdir()
    (tmp_path / "etc").mkdir()
    return Layout(tmp_path / "fat", tmp_path / "etc")


def config_text(etc: Path, *, gw: str = "gw-0042", tls: bool = True, port: int = 8883) -> str:
    tls_part = (f"{{ca: {etc}/ca.pem, cert: {etc}/gw.crt, key: {etc}/gw.key}}" if tls
                else "false")
    return (f"gateway: {{id: {gw}, site: res-les-pins}}\n"
            f"mqtt:\n  host: broker.example.org\n  port: {port}\n  tls: {tls_part}\n")


def self_signed(key: ec.EllipticCurvePrivateKey, cn: str) -> bytes:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(1).not_valid_before(now)
            .not_valid_after(now + dt.timedelta(days=30)).sign(key, hashes.SHA256()))
    return cert.public_bytes(serialization.Encoding.PEM)


def key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def test_valid_drop_is_installed_and_removed_from_the_fat(layout: Layout) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    (layout.drop / "gateway.yaml").write_text(config_text(layout.config_dir))
    (layout.drop / "ca.pem").write_bytes(self_signed(ec.generate_private_key(ec.SECP256R1()), "ca"))
    (layout.drop / "gw.crt").write_bytes(self_signed(key, "gw-0042"))
    (layout.drop / "gw.key").write_bytes(key_pem(key))
    lines: list[str] = []
    outcome = firstboot.run(layout, say=lines.append)
    assert outcome.problems == []
    assert {p.name for p in outcome.installed} == {"ca.pem", "gw.crt", "gw.key", "gateway.yaml"}
    assert (layout.config_dir / "gateway.yaml").read_text() == config_text(layout.config_dir)
    assert stat.S_IMODE((layout.config_dir / "gw.key").stat().st_mode) == 0o600
    # moved, not copied: no key stays on a partition any laptop can read
    assert sorted(p.name for p in layout.drop.iterdir()) == ["batigate-status.txt"]
    assert outcome.key_created is None
    assert any("installed" in line for line in lines)


def test_invalid_config_keeps_the_previous_one_and_says_why(layout: Layout) -> None:
    previous = config_text(layout.config_dir, tls=False)
    (layout.config_dir / "gateway.yaml").write_text(previous)
    (layout.drop / "gateway.yaml").write_text(config_text(layout.config_dir, gw="GW 42",
                                                          tls=False, port=99999))
    lines: list[str] = []
    outcome = firstboot.run(layout, say=lines.append)
    assert (layout.config_dir / "gateway.yaml").read_text() == previous
    assert len(outcome.problems) == 2  # every problem at once, with file:line
    assert any(":1: gateway.id:" in p for p in outcome.problems)
    assert any(":4: mqtt.port:" in p for p in outcome.problems)
    assert all(line.startswith("batigate-firstboot:") for line in lines)
    assert sum("REJECTED" in line for line in lines) == 2
    errors = (layout.drop / "batigate-errors.txt").read_text()
    assert "kept its previous config" in errors and "mqtt.port" in errors
    assert (layout.drop / "gateway.yaml.rejected").exists()
    assert not (layout.drop / "gateway.yaml").exists()
    assert firstboot.main(["--drop", str(layout.drop), "--config-dir",
                           str(layout.config_dir)]) == 0  # nothing left to try: not failed again


def test_exit_status_is_1_when_a_file_is_rejected(layout: Layout) -> None:
    (layout.drop / "gateway.yaml").write_text("gateway: [unclosed\n")
    assert firstboot.main(["--drop", str(layout.drop), "--config-dir",
                           str(layout.config_dir)]) == 1


def test_certificate_that_does_not_match_the_key_is_rejected(layout: Layout) -> None:
    (layout.drop / "gateway.yaml").write_text(config_text(layout.config_dir))
    (layout.drop / "ca.pem").write_bytes(self_signed(ec.generate_private_key(ec.SECP256R1()), "ca"))
    (layout.drop / "gw.crt").write_bytes(self_signed(ec.generate_private_key(ec.SECP256R1()), "x"))
    (layout.drop / "gw.key").write_bytes(key_pem(ec.generate_private_key(ec.SECP256R1())))
    outcome = firstboot.run(layout, say=lambda _: None)
    assert outcome.problems == ["gw.crt: the certificate does not match the key gw.key"]
    assert list(layout.config_dir.iterdir()) == []


def test_garbage_pem_and_paths_outside_the_config_dir_are_rejected(layout: Layout) -> None:
    text = config_text(layout.config_dir).replace(f"ca: {layout.config_dir}/ca.pem",
                                                  "ca: /usr/share/evil.pem")
    (layout.drop / "gateway.yaml").write_text(text)
    (layout.drop / "gw.crt").write_text("not a certificate")
    outcome = firstboot.run(layout, say=lambda _: None)
    assert any("mqtt.tls.ca: /usr/share/evil.pem must be in" in p for p in outcome.problems)
    assert any("gw.crt: not PEM certificates" in p for p in outcome.problems)
    assert list(layout.config_dir.iterdir()) == []


def test_missing_key_is_generated_with_a_csr(layout: Layout) -> None:
    (layout.drop / "gateway.yaml").write_text(config_text(layout.config_dir))
    (layout.drop / "ca.pem").write_bytes(self_signed(ec.generate_private_key(ec.SECP256R1()), "ca"))
    outcome = firstboot.run(layout, say=lambda _: None)
    assert outcome.problems == []
    assert outcome.warnings == ["gw.crt is not installed yet: the agent cannot connect before it "
                                "is (drop it with its config)"]
    key_path = layout.config_dir / "gw.key"
    assert outcome.key_created == key_path
    assert stat.S_IMODE(key_path.stat().st_mode) == 0o600
    key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    csr = x509.load_pem_x509_csr((layout.drop / "gw-0042.csr").read_bytes())
    assert csr.is_signature_valid
    assert csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "gw-0042"
    assert csr.public_key() == key.public_key()
    # the next boot keeps that key
    firstboot.run(layout, say=lambda _: None)
    assert serialization.load_pem_private_key(key_path.read_bytes(), password=None) \
        .private_numbers() == key.private_numbers()


def test_nothing_dropped_and_no_config_only_says_so(layout: Layout) -> None:
    lines: list[str] = []
    outcome = firstboot.run(layout, say=lines.append)
    assert outcome.installed == [] and outcome.problems == []
    assert lines == [f"batigate-firstboot: no {layout.config_dir}/gateway.yaml yet: copy "
                     "gateway.yaml to the boot partition"]
