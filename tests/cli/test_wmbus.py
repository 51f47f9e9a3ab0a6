"""`batigate wmbus decode` and `batigate wmbus keys import` through the real CLI."""

from __future__ import annotations

import json
import stat
from pathlib import Path

from click.testing import CliRunner

from agent.cli.main import main
from tests.drivers.wmbus.vectors import ENGELMANN, ENGELMANN_KEY, IPERL


def test_decode_json_contract() -> None:
    result = CliRunner().invoke(main, ["wmbus", "decode", IPERL.hex(), "--json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert {"id", "manufacturer", "version", "medium", "access_number", "status",
            "encryption", "records"} <= doc.keys()
    assert doc["encryption"] == {"mode": 0, "decrypted": False}
    assert doc["records"][0] == {"value": 123.529, "unit": "m3", "quantity": "volume",
                                 "function": "instantaneous", "storage": 0, "tariff": 0,
                                 "subunit": 0}


def test_decode_file_with_key_and_table(tmp_path: Path) -> None:
    path = tmp_path / "t.hex"
    path.write_text(ENGELMANN.hex(" ") + "\n")
    result = CliRunner().invoke(main, ["wmbus", "decode", str(path), "--key", ENGELMANN_KEY.hex()])
    assert result.exit_code == 0, result.output
    assert "50898527" in result.stdout and "decrypted" in result.stdout
    assert ENGELMANN_KEY.hex() not in result.output.lower()


def test_undecryptable_and_malformed_exit_1_with_one_line() -> None:
    for args, word in ((["--key", "00" * 16], "key_wrong"), ([], "key_missing")):
        result = CliRunner().invoke(main, ["wmbus", "decode", ENGELMANN.hex(), *args])
        assert result.exit_code == 1
        assert result.stderr.count("\n") == 1 and result.stderr.startswith(word)
        assert "50898527" in result.stderr
    cut = CliRunner().invoke(main, ["wmbus", "decode", IPERL[:-4].hex()])
    assert cut.exit_code == 1 and cut.stderr.startswith("truncated")


def test_bad_key_is_a_usage_error_without_echo() -> None:
    result = CliRunner().invoke(main, ["wmbus", "decode", IPERL.hex(), "--key", "abc123"])
    assert result.exit_code == 2 and "abc123" not in result.output


def test_keys_import_writes_0600_and_never_prints_keys(tmp_path: Path) -> None:
    key = "00112233445566778899AABBCCDDEEFF"
    csv_file = tmp_path / "delivery.csv"
    csv_file.write_text(f"Meter ID;AES Key\n12345678;{key}\n87654321;{key[::-1]}\n")
    keys = tmp_path / "wmbus.keys"
    result = CliRunner().invoke(main, ["wmbus", "keys", "import", str(csv_file),
                                       "--keys", str(keys)])
    assert result.exit_code == 0, result.output
    assert "2 keys" in result.stdout and key not in result.output
    assert stat.S_IMODE(keys.stat().st_mode) == 0o600
    decoded = CliRunner().invoke(main, ["wmbus", "decode", IPERL.hex(), "--keys", str(keys)])
    assert decoded.exit_code == 0
