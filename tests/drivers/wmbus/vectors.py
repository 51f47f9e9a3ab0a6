"""Real telegrams for the unit tests, each with where it comes from."""

from __future__ import annotations

import json
from pathlib import Path

WMBUSMETERS = Path(__file__).resolve().parents[3].parent / "shared" / "conformance" / \
    "wmbus-wmbusmeters" / "telegrams.jsonl"

# Sensus iPerl, plaintext, short TPL (protocols.md §3.4, wmbusmeters iperl.xmq): 123.529 m3.
IPERL = bytes.fromhex("1844AE4C4455223368077A55000000041389E20100023B0000")

# Engelmann water meter, ELL-I + TPL mode 5 (9 blocks), with its key: a telegram that is NOT in
# the wmbusmeters file (github.com/Mandharaurs/oms-telegram-decryption, README).
ENGELMANN = bytes.fromhex(
    "a144c5142785895070078c20607a9d00902537ca231fa2da5889be8df3673ec136aebfb80d4ce395ba98f6b3"
    "844a115e4be1b1c9f0a2d5ffbb92906aa388deaa82c929310e9e5c4c0922a784df89cf0ded833be8da996eb5"
    "885409b6c9867978dea24001d68c603408d758a1e2b91c42ebad86a9b9d287880083bb0702850574d7b51e9c"
    "209ed68e0374e9b01febfd92b4cb9410fdeaf7fb526b742dc9a8d0682653")
ENGELMANN_KEY = bytes.fromhex("4255794d3dccfd46953146e701b7db68")


def wmbusmeters(driver: str) -> list[dict]:
    rows = []
    for line in WMBUSMETERS.read_text(encoding="utf-8").splitlines():
        row = json.loads(line)
        if row["driver"] == driver:
            row["frame"] = bytes.fromhex(row["telegram"][: len(row["telegram"]) // 2 * 2])
            rows.append(row)
    return rows
