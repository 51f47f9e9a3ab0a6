"""A small fuzz budget in `make test` (the million-input run is `make fuzz`): every target runs,
and none finds anything."""

from __future__ import annotations

import pytest

from tests.fuzz import run


@pytest.mark.timeout(120)
def test_a_small_budget_finds_nothing(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(run, "FINDINGS", tmp_path / "findings")
    lines: list[str] = []
    found = run.run(4000, seed=7, say=lines.append)
    assert [line.split()[0] for line in lines if "inputs" in line] == [
        "commands", "yaml", "mbus", "modbus", "wmbus"]
    assert found == 0, "\n".join(lines)
