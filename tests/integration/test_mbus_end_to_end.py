"""M-Bus meters -> agent -> outbox -> real mosquitto -> backend, with the simulator as the bus."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from drivers.mbus.simulator import HeatMeter, MBusSimulator, WaterMeter, default_meters
from tests.broker import Mosquitto
from tests.integration.helpers import load, running_agent, write_config
from tests.observer import Observer
from tests.observer import observing as observe

ROOT = "bgw/v1/site-a/gw-test"


@pytest.fixture
async def meters() -> AsyncIterator[MBusSimulator]:
    sim = MBusSimulator(default_meters())
    await sim.start()
    yield sim
    await asyncio.sleep(0.05)  # the agent has closed its link: let the simulator see the EOF
    await sim.stop()


def observing(port: int) -> Any:
    return observe(port, f"{ROOT}/#", client_id="mbus-observer")


def records(observer: Observer, device: str) -> list[dict[str, dict]]:
    """Each telemetry message of `device` as {name: SenML record}."""
    return [{r["n"]: r for r in body["e"]} for body in observer.bodies(f"dev/{device}/tm")]


async def test_meter_readings_arrive_in_senml_units(tmp_path: Path, broker: Mosquitto,
                                                    meters: MBusSimulator) -> None:
    water, heat = meters.meters[1], meters.meters[12]
    assert isinstance(water, WaterMeter) and isinstance(heat, HeatMeter)
    devices = [
        {"id": "eau-a12", "bus": "meters", "address": 1, "poll": "500ms", "timeout": "300ms",
         "points": [{"name": "volume", "record": {"quantity": "volume"}},
                    {"name": "flow", "record": {"quantity": "volume_flow"}}]},
        {"id": "calo-a13", "bus": "meters", "secondary": "31000012", "manufacturer": "KAM",
         "poll": "500ms", "timeout": "300ms",
         "points": [{"name": "energy", "record": {"quantity": "energy"}, "unit": "J"},
                    {"name": "energy_month_1", "record": {"quantity": "energy", "storage": 1}},
                    {"name": "flow_temperature", "record": {"quantity": "flow_temperature"}}]},
        {"id": "eau-a14", "bus": "meters", "address": 3, "poll": "500ms"},  # every record
    ]
    buses = [{"id": "meters", "driver": "mbus", "port": f"socket://127.0.0.1:{meters.port}"}]
    config = load(write_config(tmp_path, broker_port=broker.port, modbus_port=1,
                               devices=devices, buses=buses))
    async with observing(broker.port) as observer, running_agent(config) as agent:
        await observer.wait_for(lambda ms: all(
            len(records(observer, dev)) >= 2 for dev in ("eau-a12", "calo-a13", "eau-a14")))
        stats = agent.drivers["meters"].stats
    water_tm = records(observer, "eau-a12")[-1]
    assert water_tm["volume"]["u"] == "m3"
    assert water_tm["volume"]["v"] == pytest.approx(152.34, abs=0.01)  # the meter's index
    assert water_tm["flow"]["u"] == "m3/s"
    heat_tm = records(observer, "calo-a13")[-1]
    assert heat_tm["energy"]["u"] == "J"
    assert heat_tm["energy"]["v"] == pytest.approx(25_000_000 * 3600, rel=1e-4)  # 25 MWh
    assert heat_tm["energy_month_1"]["u"] == "J"  # from the second telegram
    assert heat_tm["flow_temperature"]["u"] == "Cel" and 55 <= heat_tm["flow_temperature"]["v"]
    auto_tm = records(observer, "eau-a14")[-1]
    assert auto_tm["volume"]["v"] == pytest.approx(41.005, abs=0.01)
    assert {"volume", "volume_flow", "date_time", "volume_s1", "error_flags"} <= set(auto_tm)
    # records the config does not declare still carry their SenML unit
    assert auto_tm["volume"]["u"] == auto_tm["volume_s1"]["u"] == "m3"
    assert auto_tm["volume_flow"]["u"] == "m3/s"
    assert stats.requests >= 6 and stats.timeouts == stats.garbage == 0
    states = observer.bodies("dev/calo-a13/state")
    assert states and states[-1]["state"] == "ok"
