"""Agent updates, the release side: fetch a signed bundle, check it, install it beside the running
release, switch `current` (images/README.md, "Updates"). The trial and the rollback are in
`agent/lifecycle/update_trial.py`; the command is `update.install` (`agent/commands/ops/update.py`).

    <releases>/                 update.releases, on the data partition (/var/lib/batigate)
      1.4.0/                    a venv: python -m venv + pip install --no-index from the wheels
      1.5.0/
      current -> 1.5.0          what runs: the built-in agent execs into it at start
      previous -> 1.4.0         where a rollback goes (or the built-in venv, an absolute link)
      staging/                  the download and its wheels; emptied before each attempt
      trial.json, outcome.json  see update_trial.py

Nothing the running agent uses changes before size, sha256 and the release signature are checked,
and the switch is one rename of a symlink. The download is a minimal HTTP/1.1 GET on asyncio
streams: the image has no curl, aiohttp is not a dependency, and threads are not used here. TLS
(https) goes through the same streams with a verifying default context; the release signature,
not the transport, is what makes the bundle trustworthy.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import hashlib
import os
import re
import shutil
import ssl
import sys
import tarfile
import zlib
from collections.abc import AsyncIterator
from pathlib import Path, PurePosixPath
from urllib.parse import urljoin, urlsplit

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from agent import __version__
from agent.sdk.durable import fsync_dir

STALL = 60.0  # a download that receives nothing for this long is abandoned
DOWNLOAD_WITHIN = 1800.0  # the whole download, whatever trickles in (update.download_within)
UNPACK_RATIO = 2  # wheels are zip files already: a bundle unpacks to about its own size
UNPACK_FLOOR = 8 * 2**20  # ... but a tiny bundle may still unpack to a few MiB
MAX_MEMBERS = 1000
STEP_TIMEOUT = 900.0  # venv creation, pip install: a Pi 3 on an SD card is slow, not that slow
MAX_REDIRECTS = 5
CHUNK = 1 << 16
WHEEL = re.compile(r"[A-Za-z0-9_.+!-]+\.whl")
VERSION = r"^[0-9][0-9A-Za-z.+!_-]{0,63}$"  # PEP 440-ish; never a path, never current/previous
# How the last update ended, on the data partition (both kinds, both slots read it): reported once.
OUTCOME = "outcome.json"


class UpdateError(Exception):
    """The update cannot go on; the message is the reason the backend reads. Nothing switched."""


def verify_release(sha256_hex: str, sig: str, key: Ed25519PublicKey) -> None:
    """The release key signed this sha256 (the ASCII hex digest): checked before any download."""
    text = sig.strip().replace("-", "+").replace("_", "/")
    try:
        raw = base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
        key.verify(raw, sha256_hex.encode("ascii"))
    except (binascii.Error, InvalidSignature, ValueError):
        raise UpdateError("the release signature does not verify with update.public_key") from None


def public_url(url: str) -> str:
    """The URL without query or credentials, for answers and logs (pre-signed URLs carry tokens)."""
    parts = urlsplit(url)
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{parts.hostname}{port}{parts.path}"


# -- download ---------------------------------------------------------------------------------

async def fetch(url: str, dest: Path, *, size: int, within: float = DOWNLOAD_WITHIN) -> str:
    """GET `url` into `dest` (following redirects) and return the sha256 hex of the body; a body
    of any other length than `size`, or a download that takes longer than `within` seconds all
    told (a server that trickles a byte now and then never stalls), is an UpdateError."""
    try:
        async with asyncio.timeout(within):
            return await _fetch(url, dest, size)
    except TimeoutError:
        raise UpdateError(f"the download from {public_url(url)} took more than {within:.0f}s "
                          "(update.download_within)") from None


async def _fetch(url: str, dest: Path, size: int) -> str:
    for _ in range(MAX_REDIRECTS + 1):
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise UpdateError(f"only http and https URLs are fetched, not {public_url(url)!r}")
        secure = parts.scheme == "https"
        try:
            reader, writer = await asyncio.wait_for(asyncio.open_connection(
                parts.hostname, parts.port or (443 if secure else 80),
                ssl=ssl.create_default_context() if secure else None), STALL)
        except (OSError, TimeoutError) as exc:
            raise UpdateError(f"cannot reach {public_url(url)}: {exc or 'timeout'}") from None
        try:
            target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
            host = parts.hostname + (f":{parts.port}" if parts.port else "")
            writer.write(f"GET {target} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n"
                         f"Accept-Encoding: identity\r\nUser-Agent: batigate/{__version__}\r\n\r\n"
                         .encode("latin-1"))
            await writer.drain()
            status, headers = await _head(reader)
            if status in (301, 302, 303, 307, 308) and "location" in headers:
                url = urljoin(url, headers["location"])
                continue
            if status != 200:
                raise UpdateError(f"{public_url(url)} answered HTTP {status}")
            return await _body(reader, headers, dest, size)
        except (OSError, TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError,
                ValueError) as exc:
            raise UpdateError(f"download from {public_url(url)} failed: "
                              f"{type(exc).__name__}: {exc}") from None
        finally:
            writer.close()
            with contextlib.suppress(OSError, ssl.SSLError):
                await writer.wait_closed()
    raise UpdateError(f"more than {MAX_REDIRECTS} redirects")


async def _head(reader: asyncio.StreamReader) -> tuple[int, dict[str, str]]:
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), STALL)
    lines = head.decode("latin-1").split("\r\n")
    version, _, rest = lines[0].partition(" ")
    if not version.startswith("HTTP/1."):
        raise ValueError(f"not an HTTP answer: {lines[0][:80]!r}")
    headers = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if sep:
            headers[name.strip().lower()] = value.strip()
    return int(rest.split(" ", 1)[0]), headers


async def _body(reader: asyncio.StreamReader, headers: dict[str, str], dest: Path,
                size: int) -> str:
    declared = headers.get("content-length")
    if declared is not None and int(declared) != size:
        raise UpdateError(f"the server sends {int(declared)} bytes; the command says {size}")
    digest = hashlib.sha256()
    received = 0
    with open(dest, "wb") as out:
        async for chunk in _chunks(reader, headers, size):
            received += len(chunk)
            if received > size:  # no need to fetch the rest of a wrong file
                raise UpdateError(f"the download is larger than the {size} bytes announced")
            digest.update(chunk)
            out.write(chunk)
        out.flush()
        os.fsync(out.fileno())
    if received != size:
        raise UpdateError(f"received {received} bytes; the command says {size}")
    return digest.hexdigest()


async def _chunks(reader: asyncio.StreamReader, headers: dict[str, str],
                  size: int) -> AsyncIterator[bytes]:
    """The body in pieces of at most CHUNK bytes: whatever a chunk header announces, nothing
    larger is ever allocated, and a chunk beyond the announced size ends the download at once."""
    if "chunked" not in headers.get("transfer-encoding", "").lower():
        while chunk := await asyncio.wait_for(reader.read(CHUNK), STALL):
            yield chunk
        return
    received = 0
    while True:  # RFC 9112 §7.1: hex size line, data, CRLF; size 0 ends (trailers ignored)
        line = await asyncio.wait_for(reader.readline(), STALL)
        text = line.split(b";")[0].strip()
        if not text or len(text) > 16:
            raise ValueError(f"bad chunk size line {line[:40]!r}")
        length = int(text, 16)
        if length == 0:
            return
        if received + length > size:
            raise UpdateError(f"a chunk of {length} bytes: the download is larger than the "
                              f"{size} bytes announced")
        received += length
        while length:
            piece = await asyncio.wait_for(reader.read(min(CHUNK, length)), STALL)
            if not piece:
                raise asyncio.IncompleteReadError(b"", length)
            length -= len(piece)
            yield piece
        await reader.readexactly(2)


# -- versions -----------------------------------------------------------------------------------

def version_key(text: str) -> tuple[tuple[int, ...], int, int, int]:
    """An order for PEP 440-style versions: the release numbers (trailing zeros dropped), then
    dev < alpha < beta < rc < the release < post releases."""
    match = re.match(r"(\d+(?:\.\d+)*)(.*)", text)
    if match is None:
        return ((), 0, 0, 0)
    release = tuple(int(n) for n in match.group(1).split("."))
    while len(release) > 1 and release[-1] == 0:
        release = release[:-1]
    rest = match.group(2).split("+", 1)[0].lower().lstrip(".-_")
    label = re.match(r"([a-z]*)[._-]?(\d*)", rest)
    word, number = (label.group(1), int(label.group(2) or 0)) if label else ("", 0)
    if not rest:
        return (release, 0, 0, 0)
    if word in ("post", "rev", "r", ""):  # 1.0.post1, 1.0r1, 1.0-1
        return (release, 1, 0, number)
    order = {"dev": 0, "a": 1, "alpha": 1, "b": 2, "beta": 2}.get(word, 3)  # c, rc, pre
    return (release, -1, order, number)


# -- unpack and install ------------------------------------------------------------------------

def unpack_limit(size: int) -> int:
    """The most a bundle of `size` bytes may unpack to."""
    return max(UNPACK_RATIO * size, UNPACK_FLOOR)


async def unpack(bundle: Path, into: Path, *, max_bytes: int | None = None) -> list[str]:
    """The bundle's wheels, written flat into `into` by their base name only: no member name can
    write outside it, and anything but wheels (and directories) is refused. The sizes in the tar
    headers are added up before each member is written: a bundle that would unpack to more than
    `max_bytes` (default `unpack_limit` of its size) is refused before it fills the disk."""
    limit = unpack_limit(bundle.stat().st_size) if max_bytes is None else max_bytes
    names: list[str] = []
    total = 0
    try:
        with tarfile.open(bundle, "r:gz") as tar:
            for count, member in enumerate(tar):
                if count >= MAX_MEMBERS:
                    raise UpdateError(f"the bundle holds more than {MAX_MEMBERS} entries")
                if member.isdir():
                    continue
                name = PurePosixPath(member.name).name
                source = tar.extractfile(member) if member.isfile() else None
                if source is None or not WHEEL.fullmatch(name) or name in names:
                    raise UpdateError(f"the bundle holds {member.name!r}: only wheels, once each")
                total += member.size
                if total > limit:
                    raise UpdateError(f"the bundle unpacks to more than {limit} bytes (at most "
                                      f"{UNPACK_RATIO}x its size): refused before writing")
                written = 0
                with open(into / name, "wb") as out:
                    while chunk := source.read(1 << 20):
                        written += len(chunk)
                        if written > member.size:  # never trust one number only
                            raise UpdateError(f"{name} is larger than its tar header says")
                        out.write(chunk)
                        await asyncio.sleep(0)  # a 30 MB bundle must not stall the event loop
                names.append(name)
    except (tarfile.TarError, EOFError, zlib.error) as exc:
        raise UpdateError(f"the bundle is not a readable tar.gz: {exc}") from None
    if not names:
        raise UpdateError("the bundle holds no wheel")
    return names


async def install(wheels: Path, target: Path, version: str) -> None:
    """A fresh venv in `target` with batigate==version from `wheels` only; the new release must
    then answer `batigate --version` with that version. On failure `target` is removed."""
    shutil.rmtree(target, ignore_errors=True)  # a half-made earlier attempt
    try:
        await _run([sys.executable, "-m", "venv", str(target)], "python -m venv")
        await _run([str(target / "bin" / "python"), "-m", "pip", "install", "--no-index",
                    "--find-links", str(wheels), "--no-cache-dir", "--no-input", "--quiet",
                    "--disable-pip-version-check", f"batigate=={version}"], "pip install")
        said = await _run([str(target / "bin" / "batigate"), "--version"], "batigate --version")
        if not re.search(rf"(^|\s){re.escape(version)}\s*$", said):
            raise UpdateError(f"the new release says {said.strip()[-100:]!r}, not {version}")
    except BaseException:
        shutil.rmtree(target, ignore_errors=True)
        raise


async def _run(argv: list[str], what: str) -> str:
    # A clean environment: the agent's PYTHON*/PIP_* settings must not leak into the new venv.
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "PIP_"))}
    env["PIP_NO_CACHE_DIR"] = "1"
    try:
        proc = await asyncio.create_subprocess_exec(*argv, stdin=asyncio.subprocess.DEVNULL,
                                                    stdout=asyncio.subprocess.PIPE,
                                                    stderr=asyncio.subprocess.STDOUT, env=env)
    except OSError as exc:
        raise UpdateError(f"{what}: cannot start: {exc}") from None
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), STEP_TIMEOUT)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise UpdateError(f"{what}: no result after {STEP_TIMEOUT:.0f}s") from None
    text = out.decode("utf-8", "replace")
    if proc.returncode != 0:
        raise UpdateError(f"{what} failed ({proc.returncode}): {text.strip()[-400:]}")
    return text


# -- the links --------------------------------------------------------------------------------

def link_text(releases: Path, target: Path) -> str:
    """Relative inside the releases folder (it is reached through a bind mount), else absolute."""
    return target.name if target.parent == releases else str(target)


def set_link(link: Path, text: str) -> None:
    """Point `link` at `text` in one rename: a power cut leaves the old or the new link."""
    tmp = link.with_name(link.name + ".tmp")
    tmp.unlink(missing_ok=True)
    os.symlink(text, tmp)
    os.replace(tmp, link)
    fsync_dir(link.parent)


def in_force(releases: Path, running: Path) -> str:
    """What `current` says now, or the environment running this agent (the built-in venv)."""
    current = releases / "current"
    return os.readlink(current) if current.is_symlink() else str(running)


def prune(releases: Path) -> None:
    """Remove every release but the ones `current` and `previous` name: the data partition is
    small and also holds the outbox."""
    keep = {(releases / name).resolve() for name in ("current", "previous")
            if (releases / name).is_symlink()}
    for entry in releases.iterdir():
        if entry.is_dir() and not entry.is_symlink() and entry.name != "staging" and \
                entry.resolve() not in keep:
            shutil.rmtree(entry, ignore_errors=True)
