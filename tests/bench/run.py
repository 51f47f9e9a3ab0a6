"""`make bench`: every benchmark, one after the other; each prints its own table."""

from __future__ import annotations

import importlib

BENCHES = ["tests.bench.bench_agent", "tests.bench.bench_outbox", "tests.bench.bench_rules",
           "tests.bench.bench_mbus", "tests.bench.bench_rtu", "tests.bench.bench_wmbus",
           "tests.bench.bench_wmbus_building", "tests.bench.bench_wire"]


def main() -> None:
    for name in BENCHES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:
                raise
            print(f"\n{name}: not present")
            continue
        module.main()


if __name__ == "__main__":
    main()
