"""Benchmark (not a test): wireless M-Bus telegrams decoded (and decrypted) per second, set
against the most telegrams one C1 channel can carry; CPU time per telegram; memory.

Telegram sets (all through `decode_telegram`, one CompactFormats cache as a receiver has):
  plaintext   the wmbusmeters telegrams without encryption or stored decrypted
  mode 5      the wmbusmeters telegrams that come with their key (AES-128-CBC, 2F2F check)
  ELL CTR     a real Kamstrup plaintext, AES-CTR encrypted here with a key (ELL + payload CRC)
  mode 7      OMS KDF-A: two CMACs to derive keys, a MAC check, AES-CBC (built here)

Channel ceiling: C mode sends NRZ at 100 kchip/s = 100 kbit/s. A telegram on air is the
preamble and sync word (C mode: 32 chips of 0101.. + 32 bits of sync, ~8 bytes together) plus
the frame with its format A CRCs (2 bytes per block). Back to back, with no gap, no collision and
no duty-cycle limit, one channel then carries 100000 / (8 * bytes) telegrams a second; nothing
can receive more than that from one stick.

Run: .venv/bin/python -m tests.bench.bench_wmbus [--seconds S]   (about 15 s)
"""

from __future__ import annotations

import argparse
import json
import time
import tracemalloc

from drivers.wmbus import CompactFormats, KeyStore, decode_telegram
from drivers.wmbus.crc import format_a_length
from tests.drivers.wmbus.vectors import WMBUSMETERS

VECTORS = WMBUSMETERS  # ../shared from /work/main, ../../shared from a worktree
C_MODE_BITS_PER_S = 100_000
C_MODE_OVERHEAD_BYTES = 8  # preamble (32 chips) + sync (32 bits)

Case = tuple[bytes, KeyStore | None, bool]


def load_sets() -> dict[str, list[Case]]:
    from tests.drivers.wmbus.builders import ctr_encrypt, mode7_telegram  # noqa: PLC0415

    plain: list[Case] = []
    mode5: list[Case] = []
    kamstrup = None
    probe = CompactFormats()
    for line in VECTORS.read_text(encoding="utf-8").splitlines():
        row = json.loads(line)
        frame = bytes.fromhex(row["telegram"][: len(row["telegram"]) // 2 * 2])
        keys = KeyStore.single(bytes.fromhex(row["key"])) if row["key"] else None
        try:
            decode_telegram(frame, keys, compact=probe, stored_plaintext=keys is None)
        except ValueError:
            continue  # the explained refusals of the conformance test
        (mode5 if keys is not None else plain).append((frame, keys, keys is None))
        if row["driver"] == "multical21" and kamstrup is None:
            kamstrup = frame
    assert kamstrup is not None
    key = bytes.fromhex("00112233445566778899AABBCCDDEEFF")
    ctr = [(ctr_encrypt(kamstrup, key), KeyStore.single(key), False)]
    records = bytes.fromhex("0413B80B0000046D1E31B121426C9F2C4413A00F0000")
    mode7 = [(mode7_telegram(key, records, counter), KeyStore.single(key), False)
             for counter in range(1, 9)]
    return {"plaintext": plain, "mode 5 (AES-CBC)": mode5, "ELL AES-CTR": ctr,
            "mode 7 (KDF-A, MAC)": mode7}


def rate(cases: list[Case], seconds: float) -> tuple[float, float]:
    """(telegrams per second of wall time, CPU µs per telegram)."""
    cache = CompactFormats()
    for frame, keys, plain in cases:  # warm up (and teach compact formats)
        decode_telegram(frame, keys, compact=cache, stored_plaintext=plain)
    done = 0
    wall0, cpu0 = time.perf_counter(), time.process_time()
    while time.perf_counter() - wall0 < seconds:
        for frame, keys, plain in cases:
            decode_telegram(frame, keys, compact=cache, stored_plaintext=plain)
        done += len(cases)
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    return done / wall, cpu / done * 1e6


def channel_ceiling(frames: list[bytes]) -> tuple[float, float]:
    """(mean bytes on air with format A CRCs, telegrams/s one C1 channel carries back to back)."""
    on_air = [format_a_length(f[0]) + C_MODE_OVERHEAD_BYTES for f in frames if f[0] != 0x68]
    mean = sum(on_air) / len(on_air)
    return mean, C_MODE_BITS_PER_S / (8 * mean)


def memory(cases: list[Case]) -> tuple[float, float]:
    """(peak KiB while decoding the set once, KiB a 200-meter receiver keeps: formats cache)."""
    tracemalloc.start()
    cache = CompactFormats()
    for frame, keys, plain in cases:
        decode_telegram(frame, keys, compact=cache, stored_plaintext=plain)
    current, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return peak / 1024, current / 1024


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="run time per set")
    args = parser.parse_args(argv)
    sets = load_sets()
    frames = [f for cases in sets.values() for f, _k, _p in cases]
    mean_bytes, ceiling = channel_ceiling(frames)
    print("\nwM-Bus decode (one core; C1 channel ceiling "
          f"{ceiling:,.0f} telegrams/s at a mean {mean_bytes:.0f} B on air)")
    print(f"{'set':24s} {'telegrams':>9s} {'per second':>11s} {'CPU µs each':>12s} "
          f"{'x C1 ceiling':>13s}")
    for name, cases in sets.items():
        per_s, cpu_us = rate(cases, args.seconds)
        print(f"{name:24s} {len(cases):>9d} {per_s:>11,.0f} {cpu_us:>12.1f} "
              f"{per_s / ceiling:>12.1f}x")
    peak, kept = memory([c for cases in sets.values() for c in cases])
    print(f"memory: peak {peak:,.0f} KiB decoding all {len(frames)} telegrams once; "
          f"{kept:,.0f} KiB still held after (compact formats cache and allocator)")


if __name__ == "__main__":
    main()
