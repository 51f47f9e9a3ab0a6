"""The fuzz loop: `make fuzz` (a million inputs), or `python -m tests.fuzz.run --budget N`.

A plain, seeded, generator-based loop (no coverage guidance, so no extra dependency): each input
is a real seed mutated a few times (bit flips, byte changes, cut, duplicated or inserted slices,
interesting bytes and integers, splices of two seeds) or, one time in eight, random bytes. The
budget is shared evenly among the targets; each one prints its count, its rate and its findings.
A finding is an exception the target does not list as a refusal, or an input slower than
SLOW_INPUT; the first ones are written to FINDINGS for replay. Exit 1 when there is any.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path

from tests.fuzz.targets import Target, targets

SLOW_INPUT = 1.0  # seconds: one input slower than this is a finding (a hang in the making)
FINDINGS = Path("build/fuzz-findings")
MAX_INPUT = 4096
INTERESTING = [0x00, 0x01, 0x7F, 0x80, 0xFF, 0x0D, 0x0A, 0x22, 0x5B, 0x7B, 0x68, 0x16, 0xE5,
               0x2A, 0x26, 0x3A, 0x2D]


def mutate(rng: random.Random, seeds: list[bytes]) -> bytes:
    if rng.random() < 0.125:
        return rng.randbytes(rng.randrange(0, 256))
    data = bytearray(rng.choice(seeds))
    for _ in range(rng.choice((1, 1, 2, 3, 5, 8))):
        choice = rng.randrange(8)
        at = rng.randrange(len(data) + 1)
        if choice == 0 and data:  # bit flip
            at = min(at, len(data) - 1)
            data[at] ^= 1 << rng.randrange(8)
        elif choice == 1 and data:  # interesting byte
            data[min(at, len(data) - 1)] = rng.choice(INTERESTING)
        elif choice == 2:  # cut
            del data[at:at + rng.randrange(1, 64)]
        elif choice == 3 and data:  # duplicate a slice
            start = rng.randrange(len(data))
            data[at:at] = data[start:start + rng.randrange(1, 32)]
        elif choice == 4:  # random bytes inserted
            data[at:at] = rng.randbytes(rng.randrange(1, 16))
        elif choice == 5:  # splice another seed
            other = rng.choice(seeds)
            data = data[:at] + other[rng.randrange(len(other) + 1):]
        elif choice == 6 and data:  # random byte
            data[min(at, len(data) - 1)] = rng.randrange(256)
        else:  # an interesting number as text (YAML, JSON)
            data[at:at] = str(rng.choice([0, -1, 2**31, 2**63, 1e308, -0.0, 65535])).encode()
    return bytes(data[:MAX_INPUT])


def fuzz(target: Target, count: int, rng: random.Random) -> tuple[int, float, list[str]]:
    findings: list[str] = []
    started = time.perf_counter()
    for index in range(count):
        data = mutate(rng, target.seeds)
        began = time.perf_counter()
        try:
            target.run(data)
        except target.refusals:
            pass
        except Exception:  # noqa: BLE001 - a finding: recorded with its input, the loop goes on
            findings.append(_record(target.name, index, data, traceback.format_exc()))
        if time.perf_counter() - began > SLOW_INPUT:
            findings.append(_record(target.name, index, data, "slow input"))
    return count, time.perf_counter() - started, findings


def _record(name: str, index: int, data: bytes, why: str) -> str:
    FINDINGS.mkdir(parents=True, exist_ok=True)
    path = FINDINGS / f"{name}-{index}.bin"
    path.write_bytes(data)
    (FINDINGS / f"{name}-{index}.txt").write_text(why)
    return f"{path}: {why.strip().splitlines()[-1]}"


def run(budget: int, only: set[str] | None = None, seed: int = 1,
        say: Callable[[str], None] = print) -> int:
    """Fuzz every target (or `only` those); returns the number of findings."""
    builders: Iterator[Callable[[], Target]] = targets()
    chosen = [build() for build in builders
              if only is None or build.__name__.removesuffix("_target") in only]
    each = max(1, budget // len(chosen))
    total_findings = 0
    for target in chosen:
        try:
            count, elapsed, findings = fuzz(target, each, random.Random(f"{seed}:{target.name}"))
        finally:
            target.close()
        total_findings += len(findings)
        say(f"{target.name:9s} {count:9d} inputs in {elapsed:7.1f}s = {count / elapsed:9.0f}/s"
            f"  findings: {len(findings)}")
        for line in findings[:5]:
            say(f"    {line}")
    return total_findings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--budget", type=int, default=1_000_000, help="inputs, all targets")
    parser.add_argument("--only", action="append", help="commands, yaml, mbus, modbus, wmbus")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    return 1 if run(args.budget, set(args.only) if args.only else None, args.seed) else 0


if __name__ == "__main__":
    sys.exit(main())
