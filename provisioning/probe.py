"""Does the broker accept this identity? One MQTT CONNECT over TLS, and a plain-words reason.

The agent's uplink reports a refused connection as the MQTT library words it ("[SSL: ...]"); a
technician needs to know *whose* certificate was refused and what to do. This probe speaks just
enough MQTT 3.1.1 (CONNECT, CONNACK, DISCONNECT: a dozen bytes, no library) to separate:

- the broker's certificate is not trusted or names another host (our check, always on);
- the broker refused ours (TLS alert: expired, unknown CA, missing);
- TLS passed but the broker refused the session (CONNACK code);
- nothing listens, or no answer.

With TLS 1.3 the server checks the client certificate after the client considers the handshake
done, so the refusal only shows on the first read: reading the CONNACK is what makes it visible.
It uses a client id of its own (`<id>-probe`) so it never takes over the running agent's session.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from dataclasses import dataclass

CONNACK_CODES = {1: "unacceptable protocol version", 2: "client id rejected",
                 3: "server unavailable", 4: "bad user name or password", 5: "not authorized"}

_ALERT_HINTS = {
    "CERTIFICATE_EXPIRED": "this gateway's certificate has expired: renew it "
                           "(`batigate provision --renew`, then install the new certificate)",
    "UNKNOWN_CA": "this gateway's certificate is not signed by a CA the broker trusts",
    "BAD_CERTIFICATE": "the broker rejected this gateway's certificate",
    "CERTIFICATE_REQUIRED": "the broker requires a client certificate: set mqtt.tls.cert and key",
    "HANDSHAKE_FAILURE": "the broker refused the TLS handshake (no client certificate, or no "
                         "common cipher)",
    "CERTIFICATE_REVOKED": "this gateway's certificate was revoked",
    "CERTIFICATE_UNKNOWN": "the broker could not use this gateway's certificate",
    "DECRYPT_ERROR": "the certificate and key do not match",
}


@dataclass(frozen=True)
class ProbeResult:
    ok: bool
    stage: str  # connect | tls-server | tls-client | mqtt | ok
    message: str


def connect_packet(client_id: str, keepalive: int = 10) -> bytes:
    cid = client_id.encode()
    body = (b"\x00\x04MQTT" + b"\x04" + b"\x02" + keepalive.to_bytes(2, "big")
            + len(cid).to_bytes(2, "big") + cid)
    return b"\x10" + _remaining_length(len(body)) + body


def _remaining_length(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n % 128, n // 128
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def explain_ssl(exc: ssl.SSLError, host: str) -> ProbeResult:
    if isinstance(exc, ssl.SSLCertVerificationError):
        detail = exc.verify_message or str(exc)
        hint = ("the broker's certificate does not name this host" if "mismatch" in detail.lower()
                else "the broker's certificate is not signed by the CA in mqtt.tls.ca")
        return ProbeResult(False, "tls-server", f"refused the broker {host}: {hint} ({detail}); "
                           "server verification stays on: fix mqtt.tls.ca or mqtt.host")
    reason = (exc.reason or str(exc)).upper()
    for alert, hint in _ALERT_HINTS.items():
        if alert in reason:
            return ProbeResult(False, "tls-client", f"the broker refused: {hint} "
                               f"(TLS alert {exc.reason})")
    return ProbeResult(False, "tls-client", f"TLS failed: {exc.reason or exc}")


async def probe(host: str, port: int, context: ssl.SSLContext | None, client_id: str,
                timeout: float = 5.0) -> ProbeResult:
    writer: asyncio.StreamWriter | None = None
    try:
        async with asyncio.timeout(timeout):
            reader, writer = await asyncio.open_connection(
                host, port, ssl=context, server_hostname=host if context else None)
            writer.write(connect_packet(client_id))
            await writer.drain()
            answer = await reader.readexactly(4)
    except ssl.SSLError as exc:
        return explain_ssl(exc, host)
    except TimeoutError:
        return ProbeResult(False, "connect", f"{host}:{port} did not answer within {timeout:g}s "
                           "(firewall? wrong port?)")
    except asyncio.IncompleteReadError:
        return ProbeResult(False, "tls-client", "the broker closed the connection right after "
                           "the TLS handshake: it most likely refused this gateway's certificate "
                           "(see the broker log)")
    except ConnectionRefusedError:
        return ProbeResult(False, "connect", f"nothing listens on {host}:{port}")
    except ConnectionResetError:
        return ProbeResult(False, "tls-client", f"{host}:{port} reset the connection: it most "
                           "likely refused this gateway's certificate")
    except OSError as exc:
        return ProbeResult(False, "connect", f"cannot reach {host}:{port}: {exc.strerror or exc}")
    finally:
        if writer is not None:
            with contextlib.suppress(OSError, ssl.SSLError):
                writer.write(b"\xe0\x00")  # DISCONNECT: leave no will, no noise
                writer.close()
                # A refused TLS peer may never finish the shutdown: give up quickly.
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(1.0):
                        await writer.wait_closed()
    if answer[0] != 0x20:
        return ProbeResult(False, "mqtt", f"{host}:{port} does not speak MQTT "
                           f"(first byte 0x{answer[0]:02x})")
    code = answer[3]
    if code:
        return ProbeResult(False, "mqtt", f"the broker refused the session: "
                           f"{CONNACK_CODES.get(code, f'code {code}')}")
    return ProbeResult(True, "ok", f"{host}:{port} accepted this gateway's certificate")


def client_context(ca: str | None, cert: str | None, key: str | None) -> ssl.SSLContext:
    """The same policy as the uplink: chain and host name always verified."""
    context = ssl.create_default_context(cafile=ca)
    if cert and key:
        context.load_cert_chain(cert, key)
    return context
