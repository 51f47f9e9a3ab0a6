"""Golden cases: `cases/<name>/{rules.yaml, input.jsonl, expected.jsonl}`.

An input series (readings, device states, acks, maintenance, restarts at given times) must give
exactly the expected events, in order. Expected lines list the fields that matter; a field left
out is not compared (messages mostly), a field given must match.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.rules.harness import Driver, expand, rule, when

CASES = Path(__file__).parent / "cases"
_TIMES = ("ts", "since")


def _load(case: Path) -> tuple[list[Any], list[dict[str, Any]], list[dict[str, Any]]]:
    rules = [rule(**item) for item in yaml.safe_load((case / "rules.yaml").read_text())]
    lines = [json.loads(line) for line in (case / "input.jsonl").read_text().splitlines()
             if line.strip() and not line.startswith("#")]
    expected = [json.loads(line) for line in (case / "expected.jsonl").read_text().splitlines()
                if line.strip() and not line.startswith("#")]
    return rules, lines, expected


def _same(got: Any, want: Any) -> bool:
    if isinstance(want, float) or isinstance(got, float):
        return (isinstance(got, int | float) and isinstance(want, int | float)
                and math.isclose(got, want, rel_tol=1e-9, abs_tol=1e-12))
    return bool(got == want)


@pytest.mark.parametrize("case", sorted(p.name for p in CASES.iterdir() if p.is_dir()))
def test_golden(case: str) -> None:
    rules, steps, expected = _load(CASES / case)
    driver = Driver(rules)
    for step in expand(steps):
        driver.step(step)
    got = [event.as_dict() for event in driver.events]
    shown = "\n".join(json.dumps(e) for e in got)
    assert len(got) == len(expected), f"{len(got)} events instead of {len(expected)}:\n{shown}"
    for index, (event, want) in enumerate(zip(got, expected, strict=True)):
        for key, value in want.items():
            value = when(value) if key in _TIMES else value
            assert key in event and _same(event[key], value), (
                f"event {index} {key}: got {event.get(key)!r}, want {value!r}\n{shown}")
        assert event["message"], "every event carries a human message"
