"""A small lab CA: FOR TESTS AND LABS ONLY.

It signs gateway CSRs and issues broker and backend certificates so a bench or a test can run
mutual TLS end to end without openssl. Its key sits unencrypted in one directory and nothing
limits what it signs: a fleet uses a real CA (an offline root and an online intermediate, see
`provisioning/README.md`).

    lab = LabCA.create("batigate lab CA"); lab.save(folder)
    cert = lab.sign_csr(csr_pem, days=90)          # a gateway's CSR from `batigate provision`
    key, cert = lab.issue_server(["localhost", "127.0.0.1"])
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import re
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from provisioning import keys

CA_CERT, CA_KEY = "ca.crt", "ca.key"
_GATEWAY_ID = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")


class CsrRefused(Exception):
    """The lab CA will not sign this CSR; the message says why."""


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@dataclass
class LabCA:
    key: ec.EllipticCurvePrivateKey
    cert: x509.Certificate

    @classmethod
    def create(cls, name: str = "batigate lab CA", days: int = 3650) -> LabCA:
        key = ec.generate_private_key(ec.SECP256R1())
        now = _now()
        ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
        cert = (x509.CertificateBuilder().subject_name(_name(name)).issuer_name(_name(name))
                .public_key(key.public_key()).serial_number(x509.random_serial_number())
                .not_valid_before(now - dt.timedelta(minutes=5))
                .not_valid_after(now + dt.timedelta(days=days))
                .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
                .add_extension(x509.KeyUsage(False, False, False, False, False, True, True,
                                             False, False), critical=True)
                .add_extension(ski, critical=False)
                .sign(key, hashes.SHA256()))
        return cls(key, cert)

    @classmethod
    def load(cls, folder: Path) -> LabCA:
        key = keys.load(folder / CA_KEY)
        cert = x509.load_pem_x509_certificate((folder / CA_CERT).read_bytes())
        return cls(key, cert)

    def save(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        keys.write_private(folder / CA_KEY, self.key)
        (folder / CA_CERT).write_bytes(self.cert_pem())

    def cert_pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    # -- issuing ----------------------------------------------------------------------------------

    def _leaf(self, subject: x509.Name, public: ec.EllipticCurvePublicKey,
              san: list[x509.GeneralName], usage: x509.ObjectIdentifier, *, days: float,
              not_before: dt.datetime | None) -> x509.Certificate:
        start = not_before or (_now() - dt.timedelta(minutes=5))
        return (x509.CertificateBuilder().subject_name(subject).issuer_name(self.cert.subject)
                .public_key(public).serial_number(x509.random_serial_number())
                .not_valid_before(start).not_valid_after(start + dt.timedelta(days=days))
                .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                .add_extension(x509.KeyUsage(True, False, False, False, False, False, False,
                                             False, False), critical=True)
                .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
                .add_extension(x509.SubjectAlternativeName(san), critical=False)
                .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
                .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                    self.key.public_key()), critical=False)
                .sign(self.key, hashes.SHA256()))

    def sign_csr(self, csr_pem: bytes | str, *, days: float = 90,
                 not_before: dt.datetime | None = None) -> x509.Certificate:
        """A client certificate for a gateway CSR: signature (proof of possession), P-256 and
        a gateway-id CN are checked; the SAN is rebuilt from the CN, not copied blindly."""
        data = csr_pem.encode() if isinstance(csr_pem, str) else csr_pem
        try:
            request = x509.load_pem_x509_csr(data)
        except ValueError as exc:
            raise CsrRefused(f"not a PEM CSR ({exc})") from None
        if not request.is_signature_valid:
            raise CsrRefused("the CSR signature is invalid (no proof of possession)")
        public = request.public_key()
        if not isinstance(public, ec.EllipticCurvePublicKey) or public.curve.name != "secp256r1":
            raise CsrRefused("only EC P-256 keys are accepted")
        cn = (request.subject.get_attributes_for_oid(NameOID.COMMON_NAME) or [None])[0]
        gateway_id = str(cn.value) if cn is not None else ""
        if not _GATEWAY_ID.match(gateway_id):
            raise CsrRefused(f"CN {gateway_id!r} is not a gateway id ([a-z0-9-])")
        san = [x509.UniformResourceIdentifier(keys.san_uri(gateway_id))]
        return self._leaf(_name(gateway_id), public, san, ExtendedKeyUsageOID.CLIENT_AUTH,
                          days=days, not_before=not_before)

    def issue_client(self, cn: str, *, days: float = 90, not_before: dt.datetime | None = None,
                     ) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
        """Key and certificate in one go, for a backend identity or a test gateway."""
        key = ec.generate_private_key(ec.SECP256R1())
        return key, self.sign_csr(keys.csr_pem(keys.csr(key, cn)), days=days,
                                  not_before=not_before)

    def issue_server(self, names: list[str], *, days: float = 365, cn: str | None = None,
                     ) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
        """A broker certificate for host names and IP addresses (SAN DNS / IP)."""
        key = ec.generate_private_key(ec.SECP256R1())
        san: list[x509.GeneralName] = []
        for name in names:
            try:
                san.append(x509.IPAddress(ipaddress.ip_address(name)))
            except ValueError:
                san.append(x509.DNSName(name))
        cert = self._leaf(_name(cn or names[0]), key.public_key(), san,
                          ExtendedKeyUsageOID.SERVER_AUTH, days=days, not_before=None)
        return key, cert


def pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    """For test fixtures writing files; batigate itself never prints a key."""
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())
