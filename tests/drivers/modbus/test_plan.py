"""Coalescing: every point read exactly once, no request over the protocol limit, few requests."""

from __future__ import annotations

from collections import Counter

from hypothesis import given
from hypothesis import strategies as st

from drivers.modbus.config import BIT_TABLES, ModbusPointConfig
from drivers.modbus.plan import BITS_PER_REGISTER, Block, Need, coalesce, limit_of, needs_of, split


@st.composite
def need_lists(draw: st.DrawFn) -> list[Need]:
    count = draw(st.integers(0, 120))
    needs = []
    for index in range(count):
        table = draw(st.sampled_from(["coils", "discrete", "input", "holding"]))
        span = 1 if table in BIT_TABLES else draw(st.sampled_from([1, 2]))
        # Dense and sparse layouts both: a narrow window makes neighbours and overlaps common.
        high = draw(st.sampled_from([40, 400, 65536 - span]))
        needs.append(Need(table, draw(st.integers(0, high)), span, index))
    return needs


@given(need_lists(), st.integers(0, 40))
def test_every_need_in_exactly_one_block_within_limits(needs: list[Need], max_gap: int) -> None:
    blocks = coalesce(needs, max_gap)
    seen = Counter(need.index for block in blocks for need in block.needs)
    assert seen == Counter(need.index for need in needs)
    for block in blocks:
        assert 1 <= block.count <= limit_of(block.table)
        assert block.end <= 65536
        for need in block.needs:
            assert need.table == block.table
            assert block.start <= need.address and need.end <= block.end


@given(need_lists(), st.integers(0, 40))
def test_blocks_are_maximal(needs: list[Need], max_gap: int) -> None:
    """Two neighbouring blocks of a table could not have been one request."""
    blocks = coalesce(needs, max_gap)
    for before, after in zip(blocks, blocks[1:], strict=False):
        if before.table != after.table:
            continue
        gap = max_gap * BITS_PER_REGISTER if before.table in BIT_TABLES else max_gap
        merged = max(before.end, after.end) - before.start
        assert after.start - before.end > gap or merged > limit_of(before.table)
        assert after.start >= before.start


def _points(specs: list[tuple[str, str]]) -> list[ModbusPointConfig]:
    return [ModbusPointConfig(name=f"p{i}", register=reg, type=kind)  # type: ignore[arg-type]
            for i, (reg, kind) in enumerate(specs)]


def test_three_clusters_make_three_requests() -> None:
    specs = ([(f"holding:{a}", "uint16") for a in range(0, 8)]
             + [(f"holding:{a}", "int32") for a in (200, 202, 206, 210)]  # holes of 2 bridged
             + [(f"input:{a}", "int16") for a in range(30, 38)])
    blocks = coalesce(needs_of(_points(specs)), max_gap=8)
    assert len(specs) == 20
    assert [(b.table, b.start, b.count) for b in blocks] == [
        ("input", 30, 8), ("holding", 0, 8), ("holding", 200, 12)]


def test_gap_of_max_gap_is_bridged_one_more_is_not() -> None:
    def blocks_for(second: int) -> list[Block]:
        return coalesce([Need("holding", 0, 1, 0), Need("holding", second, 1, 1)], max_gap=8)
    assert len(blocks_for(9)) == 1  # registers 1..8 bridged: a hole of 8
    assert len(blocks_for(10)) == 2
    coils = [Need("coils", 0, 1, 0), Need("coils", 1 + 8 * 16, 1, 1)]
    assert len(coalesce(coils, max_gap=8)) == 1


def test_protocol_limits_split_long_runs() -> None:
    registers = [Need("holding", a, 1, a) for a in range(126)]
    assert [b.count for b in coalesce(registers, 0)] == [125, 1]
    coils = [Need("coils", a, 1, a) for a in range(2001)]
    assert [b.count for b in coalesce(coils, 0)] == [2000, 1]
    wide = [Need("input", a, 2, a) for a in range(0, 126, 2)]  # 63 int32 = 126 registers
    assert [b.count for b in coalesce(wide, 0)] == [124, 2]  # never cuts a value in half


def test_split_removes_holes_first_then_goes_point_by_point() -> None:
    block = coalesce([Need("holding", 0, 1, 0), Need("holding", 1, 2, 1),
                      Need("holding", 6, 1, 2), Need("holding", 6, 1, 3)], max_gap=8)[0]
    assert block.has_holes
    runs = split(block)
    assert [(b.start, b.count) for b in runs] == [(0, 3), (6, 1)]
    assert not runs[0].has_holes
    singles = split(runs[0])
    assert [(b.start, b.count) for b in singles] == [(0, 1), (1, 2)]
    assert [len(b.needs) for b in split(runs[1])] == [2]  # bits of one word still share a read
