"""Two meters answering together are merged bit by bit (AND) on the bus. With the same values
and ids a bit apart (41000001 and 41000002 at the same instant), the merge can carry a valid
checksum and decode as meter 41000000, which does not exist. The scan must not report it."""

from __future__ import annotations

from drivers.mbus import codec
from drivers.mbus.config import MBusBusConfig
from drivers.mbus.scan import scan
from drivers.mbus.simulator import MBusSimulator, WaterMeter

NOW = 1793488151.0  # an instant at which both meters send values whose merge checks out


def _merged(a: bytes, b: bytes) -> bytes:
    return bytes(x & y for x, y in zip(a, b, strict=True))


async def test_a_merged_telegram_that_decodes_is_not_taken_for_a_meter() -> None:
    one = WaterMeter(0, "41000001", "SAP", 0x15, 0x07, clock=lambda: NOW)
    two = WaterMeter(0, "41000002", "SAP", 0x15, 0x07, clock=lambda: NOW)
    phantom = codec.decode_frame(_merged(one.respond_ud2(True), two.respond_ud2(True)))
    assert phantom.id == "41000000"  # the premise: the merge is a valid, decodable telegram
    simulator = MBusSimulator([WaterMeter(0, "41000001", "SAP", 0x15, 0x07, clock=lambda: NOW),
                               WaterMeter(0, "41000002", "SAP", 0x15, 0x07, clock=lambda: NOW),
                               WaterMeter(3, "61000003", "ITW", 0x20, 0x16, clock=lambda: NOW)])
    port = await simulator.start()
    try:
        bus = MBusBusConfig.model_validate({"id": "meters", "driver": "mbus", "baudrate": 38400,
                                            "port": f"socket://127.0.0.1:{port}"})
        result = await scan(bus, addresses=range(5), timeout=0.1)
    finally:
        await simulator.stop()
    assert sorted((m.how, m.id) for m in result.meters) == [
        ("primary", "61000003"), ("secondary", "41000001"), ("secondary", "41000002"),
        ("secondary", "61000003")]
    assert result.collisions == ["primary 0"]
