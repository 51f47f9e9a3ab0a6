"""Real telegrams for the unit tests, each with where it comes from."""

from __future__ import annotations

import json
from pathlib import Path



def _shared() -> Path:
    """The shared folder beside the checkout: ../shared from /work/main, ../../shared from a
    worktree under /work/wt (the first ancestor that has one)."""
    here = Path(__file__).resolve()
    for parent in here.parents:
        if (parent / "shared" / "conformance").is_dir():
            return parent / "shared"
    return here.parents[3].parent / "shared"


WMBUSMETERS = _shared() / "conformance" / "wmbus-wmbusmeters" / "telegrams.jsonl"

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


# Real encrypted telegrams of meters that are NOT in the wmbusmeters file, posted with their keys
# in public wmbusmeters issues (data, not code). The values asserted are the ones the posters'
# decodes show.
#
# Kamstrup Multical 303 heat meter 82788281, TPL mode 5 (issues #584/#586): total energy 0 kWh,
# total volume 2.38 m3.
MULTICAL303 = bytes.fromhex(
    "5e442d2c8182788240047af3005025a90c7eb357dd477fdf96495358deb74d67c02ddad4c97b94f2535eea82"
    "de2f8317f5efe7e2df9a0d58bc630d817cdfdb83e4e32060720637cc8577ecd83bb53ebb13f77821d13fdf81"
    "65a1fb51681f46")
MULTICAL303_KEY = bytes.fromhex("75EDE0CBBB6E126764898645AA366568")
# Kamstrup Multical 62 water meter 78489982, ELL AES-CTR (issue #603): one full frame (CI 0x78)
# and two compact frames (CI 0x79) whose format is "041402FD17043B0259"; the issue shows the
# ELL IV 2D2C82994878331620DC9A8822000000 for the third.
MULTICAL62 = [bytes.fromhex(h) for h in (
    "28442d2c8299487833168d203104f2882237eaa46f1bcc844982acadd7b84bf60708311f4911a5ece3",
    "23442d2c8299487833168d20333cf2882206a5f5b7f00b0483c3d3a0957ed2512ff105aa",
    "23442D2C8299487833168D20CBDC9A88227C51934B1D0662603DD1A5BC2FD79B03CBABA3",
)]
MULTICAL62_KEY = bytes.fromhex("93757B0A070B7F34282CEBCD524426C6")
# Kamstrup flowIQ 2200 water meter 27028126, ELL AES-CTR compact frame (issue #2013).
FLOWIQ2200 = bytes.fromhex(
    "2e44372c268102273c168d20d911f336205641148494a24d85608d137ea921b2798dedf476584949f4f92a67"
    "e04919")
FLOWIQ2200_KEY = bytes.fromhex("BD9CFA2F732FD2D552C084CAE5829913")
