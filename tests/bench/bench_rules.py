"""Benchmark (not a test): rule evaluation cost per reading, 1,000 rules over 10,000 points.

The same readings and ticks go through an engine without rules (the baseline: routing only)
and through one with 1,000 rules of every type; prints µs per reading for both and the ratio.
Run: .venv/bin/python tests/bench/bench_rules.py [--readings N]
"""

from __future__ import annotations

import argparse
import gc
import json
import random
import time
from datetime import UTC
from typing import Any

from agent.sdk import registry
from agent.sdk.config import RuleConfig
from agent.sdk.models import Quality, Reading
from rules.engine import RuleEngine

DEVICES, POINTS_PER_DEVICE = 1000, 10  # 10,000 points: p0-p5 numbers, p6-p9 booleans
NUMERIC, BOOLEAN = range(6), range(6, 10)


def config(item: dict[str, Any]) -> RuleConfig:
    return registry.load(registry.RULES, item["type"]).config_model.model_validate(item)


def make_rules(rng: random.Random) -> list[RuleConfig]:
    mix = ([("threshold", 500), ("held", 100), ("stale", 100), ("comm_lost", 50),
            ("counter_rate", 100), ("availability", 50), ("bad_quality", 50), ("leak", 25),
            ("consumption", 25)])
    rules = []
    for kind, count in mix:
        for i in range(count):
            dev = f"d{rng.randrange(DEVICES)}"
            num = f"{dev}/p{rng.choice(NUMERIC)}"
            flag = f"{dev}/p{rng.choice(BOOLEAN)}"
            item: dict[str, Any] = {"id": f"{kind.replace('_', '-')}-{i}", "type": kind}
            item.update({
                "threshold": {"point": num, "below": 20, "clear_above": 30, "for": "1m"},
                "held": {"point": flag, "value": True, "for": "10m"},
                "stale": {"point": f"{dev}/*" if i % 2 else num, "for": "5m"},
                "comm_lost": {"device": dev, "for": "5m"},
                "counter_rate": {"point": flag, "max_starts": 6, "max_on": "1h"},
                "availability": {"point": flag, "max_down": "2h", "max_percent": 10,
                                 "window": "1d"},
                "bad_quality": {"point": num, "for": "5m"},
                "leak": {"point": num, "night": "01:00-05:00", "for": "24h"},
                "consumption": {"point": num, "k": 3, "days": 7},
            }[kind])
            rules.append(config(item))
    return rules


def make_readings(count: int, rng: random.Random) -> list[Reading]:
    out = []
    t0 = 1_767_225_600.0
    for i in range(count):
        point = i % (DEVICES * POINTS_PER_DEVICE)
        dev, p = divmod(point, POINTS_PER_DEVICE)
        ts = t0 + (i // (DEVICES * POINTS_PER_DEVICE)) * 30.0  # every point polled every 30 s
        value: Any = rng.random() < 0.5 if p in BOOLEAN else rng.uniform(0, 100)
        quality = Quality.BAD if rng.random() < 0.01 else Quality.GOOD
        out.append(Reading(f"d{dev}", f"p{p}", value, None, ts, quality))
    return out


def run(engine: RuleEngine, readings: list[Reading]) -> tuple[float, int]:
    events = 0
    last_tick = readings[0].ts
    start = time.perf_counter()
    for reading in readings:
        now = reading.ts
        if now - last_tick >= 1.0:  # the agent ticks about every second
            events += len(engine.tick(now))
            last_tick = now
        events += len(engine.on_reading(reading, now))
    return time.perf_counter() - start, events


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--readings", type=int, default=300_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    rng = random.Random(42)
    rules = make_rules(rng)
    readings = make_readings(args.readings, rng)
    watched = {ref for rule in rules if rule.type != "comm_lost" for ref in rule.points()}

    def reaches_a_rule(r: Reading) -> bool:
        return f"{r.device}/{r.name}" in watched or f"{r.device}/*" in watched

    hit_points = sum(map(reaches_a_rule, readings[: DEVICES * POINTS_PER_DEVICE]))
    hits = sum(map(reaches_a_rule, readings))

    best_base = best_rules = float("inf")
    events = 0
    for _ in range(args.repeat):  # best of N: the figure least disturbed by the machine
        base, _ = run(RuleEngine([], tz=UTC), readings)
        engine = RuleEngine(rules, tz=UTC)
        with_rules, events = run(engine, readings)
        best_base, best_rules = min(best_base, base), min(best_rules, with_rules)
    per = 1e6 / len(readings)
    print(f"rules: {len(rules)}  points: {DEVICES * POINTS_PER_DEVICE}  "
          f"points read by >=1 rule: {hit_points}  readings: {len(readings)}")
    print(f"baseline (routing, no rules): {best_base * per:7.3f} µs/reading")
    print(f"with {len(rules)} rules:            {best_rules * per:7.3f} µs/reading  "
          f"(ratio {best_rules / best_base:.1f}x, {events} alarm events)")
    print(f"extra cost per reading that reaches a rule: "
          f"{(best_rules - best_base) * 1e6 / hits:7.3f} µs ({hits} such readings)")
    gc.collect()  # do not charge a collection of the readings to the export
    start = time.perf_counter()
    state = json.dumps(engine.export_state())
    took = time.perf_counter() - start
    print(f"export_state + json.dumps: {took * 1e3:.1f} ms, {len(state) / 1024:.0f} KiB")
    start = time.perf_counter()
    RuleEngine(rules, json.loads(state), tz=UTC).tick(readings[-1].ts)
    print(f"restore + first tick: {(time.perf_counter() - start) * 1e3:.1f} ms")


if __name__ == "__main__":
    main()
