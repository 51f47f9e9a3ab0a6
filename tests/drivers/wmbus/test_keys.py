"""The keys file: 0600 enforced, keys never shown, a manufacturer's CSV imported liberally."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from drivers.wmbus.keys import KeyFileError, KeyStore, import_csv

KEY = "00112233445566778899AABBCCDDEEFF"
KEY2 = "FFEEDDCCBBAA99887766554433221100"


def _write(path: Path, text: str, mode: int = 0o600) -> Path:
    path.write_text(text)
    path.chmod(mode)
    return path


def test_load_lookup_and_masked_repr(tmp_path: Path) -> None:
    path = _write(tmp_path / "k", f"# comment\n12345678 {KEY}\n87654321;KAM;{KEY2}\n\n")
    store = KeyStore.load(path)
    assert store.lookup("12345678") == bytes.fromhex(KEY)
    assert store.lookup("87654321", "KAM") == bytes.fromhex(KEY2)
    assert store.lookup("87654321", "SEN") is None  # the key is for Kamstrup's meter
    assert store.lookup("99999999") is None
    for text in (repr(store), str(store)):
        assert KEY not in text.upper() and KEY2 not in text.upper() and "2 keys" in text


def test_readable_by_others_is_refused(tmp_path: Path) -> None:
    path = _write(tmp_path / "k", f"12345678 {KEY}\n", 0o644)
    with pytest.raises(KeyFileError, match="chmod 600"):
        KeyStore.load(path)


def test_bad_line_named_without_the_key(tmp_path: Path) -> None:
    path = _write(tmp_path / "k", f"12345678 {KEY}\n1234 {KEY[:-2]}ZZ\n")
    with pytest.raises(KeyFileError) as caught:
        KeyStore.load(path)
    assert f"{path}:2:" in str(caught.value)
    assert KEY[:-2] not in str(caught.value)


def test_save_creates_0600_and_round_trips(tmp_path: Path) -> None:
    store = KeyStore()
    store.add("12345678", bytes.fromhex(KEY))
    store.add("00000042", bytes.fromhex(KEY2), "kam")
    old = os.umask(0)
    try:
        path = store.save(tmp_path / "keys")
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    again = KeyStore.load(path)
    assert again.lookup("00000042", "KAM") == bytes.fromhex(KEY2)
    assert again.lookup("12345678") == bytes.fromhex(KEY)


def test_import_semicolon_csv_with_header() -> None:
    text = ("Serial number;Manufacturer;Medium;AES key\n"
            f"12345678;KAM;water;{KEY}\n"
            f"1234567;KAM;water;{KEY2}\n"  # spreadsheet dropped the leading zero
            "87654321;KAM;water;not-a-key\n")
    store = KeyStore()
    added, problems = import_csv(text, store, "d.csv")
    assert added == 2
    assert store.lookup("01234567", "KAM") == bytes.fromhex(KEY2)
    assert len(problems) == 1 and problems[0].startswith("d.csv:4:")
    assert "not-a-key" not in problems[0]


def test_import_comma_csv_without_header() -> None:
    store = KeyStore()
    added, problems = import_csv(f"A1,12345678,{KEY}\nA2,87654321,{KEY2}\n", store)
    assert (added, problems) == (2, [])
    assert store.lookup("87654321") == bytes.fromhex(KEY2)
