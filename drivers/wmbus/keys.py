"""Per-meter AES-128 keys: a file of their own, mode 0600, never printed.

File format (written by `batigate wmbus keys import`, editable by hand), one meter a line:

    # id        manufacturer  key (32 hex digits)
    12345678    KAM           00112233445566778899AABBCCDDEEFF
    87654321                  FFEEDDCCBBAA99887766554433221100

Separators: blanks, ';' or ','. The manufacturer (3 letters) is optional; a line with it only
matches that manufacturer's meter of that id. The file must not be readable by group or others:
`load` refuses it otherwise, and `save` creates it 0600.
"""

from __future__ import annotations

import csv
import io
import os
import re
import stat
from pathlib import Path

MAX_FILE_BYTES = 4 * 1024 * 1024  # 4 MiB: ~60 000 meters, well past a building
_SPLIT = re.compile(r"[\s;,]+")
_HEX_KEY = re.compile(r"^[0-9A-Fa-f]{32}$")
_ID = re.compile(r"^[0-9A-Fa-f]{8}$")
_MANUFACTURER = re.compile(r"^[A-Za-z]{3}$")


class KeyFileError(ValueError):
    """A keys file that cannot be used; the message names file:line and never holds a key."""


def parse_key(text: str) -> bytes:
    """32 hex digits (blanks and ':' allowed) -> 16 bytes; the error never echoes the key."""
    compact = re.sub(r"[\s:]", "", text)
    if not _HEX_KEY.match(compact):
        raise KeyFileError(f"an AES-128 key is 32 hex digits (got {len(compact)} characters)")
    return bytes.fromhex(compact)


def normalise_id(text: str) -> str:
    ident = text.strip()
    if ident.isdigit() and len(ident) < 8:
        ident = ident.zfill(8)  # spreadsheets drop leading zeros
    if not _ID.match(ident):
        raise KeyFileError(f"meter id {ident[:20]!r} is not 8 digits")
    return ident.upper()


def _sort_key(item: tuple[tuple[str, str | None], bytes]) -> tuple[str, str]:
    (ident, man), _key = item
    return ident, man or ""


class KeyStore:
    """Keys by meter id (and optionally manufacturer). repr/str never show a key."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path
        self._keys: dict[tuple[str, str | None], bytes] = {}
        self._default: bytes | None = None

    def __repr__(self) -> str:
        where = f" {self.path}" if self.path else ""
        default = " + a default key" if self._default else ""
        return f"<KeyStore{where}: {len(self._keys)} keys{default}>"

    __str__ = __repr__

    def __len__(self) -> int:
        return len(self._keys)

    def __bool__(self) -> bool:
        return True  # an empty store is still a store ("if keys:" must not mean "if len")

    @classmethod
    def single(cls, key: bytes) -> KeyStore:
        """One key for whatever meter asks (`wmbus decode --key`)."""
        store = cls()
        store._default = bytes(key)
        return store

    def add(self, ident: str, key: bytes, manufacturer: str | None = None) -> None:
        if len(key) != 16:
            raise KeyFileError("an AES-128 key is 16 bytes")
        man = manufacturer.upper() if manufacturer else None
        self._keys[(normalise_id(ident), man)] = bytes(key)

    def lookup(self, ident: str, manufacturer: str | None = None) -> bytes | None:
        ident = ident.upper()
        if manufacturer:
            key = self._keys.get((ident, manufacturer.upper()))
            if key is not None:
                return key
        return self._keys.get((ident, None), self._default)

    def has(self, ident: str, manufacturer: str | None = None) -> bool:
        return self.lookup(ident, manufacturer) is not None

    # ------------------------------------------------------------------ file

    @classmethod
    def load(cls, path: str | Path) -> KeyStore:
        path = Path(path)
        try:
            info = path.stat()
        except OSError as exc:
            raise KeyFileError(f"{path}: {exc.strerror or exc}") from None
        if info.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise KeyFileError(
                f"{path}: mode {stat.S_IMODE(info.st_mode):04o} lets others read the keys; "
                f"chmod 600 {path}"
            )
        if info.st_size > MAX_FILE_BYTES:
            raise KeyFileError(f"{path}: {info.st_size} bytes, more than {MAX_FILE_BYTES}")
        store = cls(path)
        text = path.read_text(encoding="utf-8", errors="replace")
        for number, line in enumerate(text.splitlines(), 1):
            fields = [f for f in _SPLIT.split(line.split("#", 1)[0].strip()) if f]
            if not fields:
                continue
            try:
                if len(fields) == 2:
                    store.add(fields[0], parse_key(fields[1]))
                elif len(fields) == 3 and _MANUFACTURER.match(fields[1]):
                    store.add(fields[0], parse_key(fields[2]), fields[1])
                else:
                    raise KeyFileError("expected: ID [MANUFACTURER] KEY")
            except KeyFileError as exc:
                raise KeyFileError(f"{path}:{number}: {exc}") from None
        return store

    def save(self, path: str | Path | None = None) -> Path:
        """Write atomically, created 0600 (never a moment readable by others)."""
        target = Path(path or self.path or "")
        if not str(target):
            raise KeyFileError("no path to save the keys to")
        lines = ["# batigate wM-Bus keys: id manufacturer key. Keep mode 0600.\n"]
        for (ident, man), key in sorted(self._keys.items(), key=_sort_key):
            fields = (ident, man, key.hex().upper()) if man else (ident, key.hex().upper())
            lines.append(" ".join(fields) + "\n")
        tmp = target.with_name(f".{target.name}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.fchmod(fd, 0o600)
            os.write(fd, "".join(lines).encode())
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, target)
        self.path = target
        return target


# ------------------------------------------------------------------ manufacturer CSV

_ID_HEADERS = ("id", "serial", "meter", "address", "numero", "numéro", "n°", "secondary",
               "device")
_KEY_HEADERS = ("key", "aes", "clé", "cle", "schlüssel")
_MAN_HEADERS = ("manufacturer", "man", "fabricant", "hersteller", "brand")


def _column(header: list[str], names: tuple[str, ...]) -> int | None:
    for index, cell in enumerate(header):
        low = cell.strip().lower()
        if any(name in low for name in names):
            return index
    return None


def import_csv(text: str, store: KeyStore, source: str = "CSV") -> tuple[int, list[str]]:
    """Add the keys of a manufacturer's CSV to `store`: (count added, one problem per line).

    Liberal: ';', ',' or tab separated; a header row naming the id/serial and key columns, or
    no header and then the first 8-digit cell is the id and the first 32-hex-digit cell the key.
    """
    if len(text) > MAX_FILE_BYTES:
        raise KeyFileError(f"{source}: more than {MAX_FILE_BYTES} bytes")
    sample = text[:4096]
    delimiter = max(";,\t", key=sample.count)
    rows = list(csv.reader(io.StringIO(text), delimiter=delimiter))
    id_col = key_col = man_col = None
    start = 0
    if rows:
        header = rows[0]
        if not any(_HEX_KEY.match(c.strip()) for c in header):
            id_col = _column(header, _ID_HEADERS)
            key_col = _column(header, _KEY_HEADERS)
            man_col = _column(header, _MAN_HEADERS)
            start = 1
    added, problems = 0, []
    for number, row in enumerate(rows[start:], start + 1):
        cells = [c.strip() for c in row]
        if not any(cells):
            continue
        try:
            ident = cells[id_col] if id_col is not None and id_col < len(cells) else next(
                (c for c in cells if _ID.match(c) or (c.isdigit() and len(c) < 8)), "")
            key_text = cells[key_col] if key_col is not None and key_col < len(cells) else next(
                (c for c in cells if _HEX_KEY.match(re.sub(r"[\s:]", "", c))), "")
            man = cells[man_col] if man_col is not None and man_col < len(cells) else None
            store.add(ident, parse_key(key_text), man if man and _MANUFACTURER.match(man) else None)
            added += 1
        except KeyFileError as exc:
            problems.append(f"{source}:{number}: {exc}")
    return added, problems
