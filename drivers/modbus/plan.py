"""Coalescing: the fewest read requests that cover every point of a device.

On RS-485 the per-transaction overhead dominates (a 1-register read at 9600 8E1 costs ~25 ms, an
extra register ~2.3 ms, research/protocols.md §1.3), so neighbouring points are read together and
small holes between them are read and thrown away. A pure function of the points: the driver
computes it once per device, not once per poll.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from drivers.modbus.config import BIT_TABLES, TABLES, ModbusPointConfig, Table

# Modbus Application Protocol V1.1b3 limits per read request.
MAX_REGISTERS = 125
MAX_BITS = 2000
BITS_PER_REGISTER = 16  # a hole of N registers costs about as much wire time as 16N bits


@dataclass(frozen=True, slots=True)
class Need:
    """The footprint of one point: `span` registers (or bits) from `address` in `table`."""

    table: Table
    address: int
    span: int
    index: int  # position of the point in the device's list

    @property
    def end(self) -> int:
        return self.address + self.span


@dataclass(frozen=True, slots=True)
class Block:
    """One read request and the points it serves."""

    table: Table
    start: int
    count: int
    needs: tuple[Need, ...]

    @property
    def end(self) -> int:
        return self.start + self.count

    @property
    def has_holes(self) -> bool:
        """True when the block reads registers no point asked for."""
        covered: set[int] = set()
        for need in self.needs:
            covered.update(range(need.address, need.end))
        return len(covered) < self.count


def limit_of(table: Table) -> int:
    return MAX_BITS if table in BIT_TABLES else MAX_REGISTERS


def needs_of(points: Sequence[ModbusPointConfig]) -> list[Need]:
    return [Need(p.register.table, p.register.address, p.span, i) for i, p in enumerate(points)]


def coalesce(needs: Iterable[Need], max_gap: int) -> list[Block]:
    """Group `needs` into blocks, table by table, in address order.

    A need joins the open block when the hole before it is at most `max_gap` registers
    (`max_gap` x 16 bits for coils and discrete inputs) and the block stays within the protocol
    limit; otherwise it opens a new block. Greedy in address order is optimal here: each block
    reaches as far as any valid block starting at the same need could.
    """
    by_table: dict[Table, list[Need]] = {}
    for need in needs:
        by_table.setdefault(need.table, []).append(need)
    blocks: list[Block] = []
    for table in TABLES:
        members = sorted(by_table.get(table, ()), key=lambda n: (n.address, n.span))
        gap_limit = max_gap * BITS_PER_REGISTER if table in BIT_TABLES else max_gap
        blocks.extend(_pack_table(table, members, gap_limit, limit_of(table)))
    return blocks


def _pack_table(table: Table, members: list[Need], gap_limit: int, size_limit: int) -> list[Block]:
    blocks: list[Block] = []
    current: list[Need] = []
    start = end = 0
    for need in members:
        fits = need.address - end <= gap_limit and max(end, need.end) - start <= size_limit
        if current and fits:
            current.append(need)
            end = max(end, need.end)
            continue
        if current:
            blocks.append(Block(table, start, end - start, tuple(current)))
        current, start, end = [need], need.address, need.end
    if current:
        blocks.append(Block(table, start, end - start, tuple(current)))
    return blocks


def split(block: Block) -> list[Block]:
    """Smaller blocks for a block the device refused with ILLEGAL ADDRESS.

    Devices with holes in their register map refuse a read that bridges a hole, so the first split
    reads only contiguous runs. A run that is still refused is cut in two halves, at a point
    boundary: the half without the refused register is read in one request, the other is cut
    again, until the refused point stands alone. The good neighbours of one refused register
    then cost about 2 log2(n) reads once and a few reads per poll after, not one read per point.
    Points on the same registers (bits of one status word) are never separated. A block that
    cannot be cut any more comes back alone.
    """
    if block.has_holes:
        return coalesce(block.needs, max_gap=0)
    same: dict[tuple[int, int], list[Need]] = {}
    for need in sorted(block.needs, key=lambda n: (n.address, n.span)):
        same.setdefault((need.address, need.span), []).append(need)
    groups = list(same.values())
    if len(groups) < 2:
        return [block]
    middle = len(groups) // 2
    return [_block_of(block.table, [n for group in half for n in group])
            for half in (groups[:middle], groups[middle:])]


def _block_of(table: Table, needs: list[Need]) -> Block:
    start = min(n.address for n in needs)
    return Block(table, start, max(n.end for n in needs) - start, tuple(needs))
