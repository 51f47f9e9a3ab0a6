"""Six weeks of a building's water meters through the real agent, the M-Bus simulator over TCP and
a real mosquitto, on a controlled wall clock (the only fake) that crosses the October clock change
and two month starts, with: the broker down across 1 November, the gateway off across two
midnights and across 1 December, a meter replaced mid-month and an index that goes down. Every
boundary index reaches the backend with one mid, the values are the meter's, and
`batigate meters export --month 2026-11` says what went over MQTT."""

from __future__ import annotations

import asyncio
import json
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from agent.commands import signing

from agent.runtime import supervisor
from agent.billing import boundaries
from agent.cli.main import main as cli
from drivers.mbus.simulator import MBusSimulator, WaterMeter
from tests.billing.helpers import PARIS, SteppedClock, paris
from tests.faults.harness import persistent_broker
from tests.integration.helpers import load, running_agent, write_config
from tests.integration.test_schemas import assert_valid
from tests.observer import Observer
from tests.observer import observing as observe

ROOT = "bgw/v1/site-a/gw-test"
DEVICES = ("wm-a011", "wm-a012")


async def polled_after(agent: supervisor.Agent, wall: float) -> None:
    """Both meters have been read after `wall` (bounded wait)."""
    async with asyncio.timeout(10):
        while not all((r := agent.pipeline.latest[d].get("volume")) is not None and r.ts >= wall
                      for d in DEVICES):
            await asyncio.sleep(0.02)


async def day_by_day(agent: supervisor.Agent, clock: SteppedClock, first: date, last: date,
                     ) -> None:
    """Three minutes after each midnight from `first` to `last`, the meters are read."""
    day = first
    while day <= last:
        wall = boundaries.midnight(day, PARIS) + 180
        clock.jump_to(wall)
        await polled_after(agent, wall + 0.5)
        day += timedelta(days=1)


def index_of(received: list[dict[str, Any]], dev: str, day: str) -> dict[str, Any]:
    return next(b for b in received if b["dev"] == dev and b["date"] == day)


def idx_messages(observer: Observer) -> list[dict[str, Any]]:
    return [m.body for m in observer.messages if m.topic.endswith("/idx") and not m.retained]


@pytest.mark.timeout(240)
async def test_six_weeks_of_boundary_indexes_through_every_fault(tmp_path: Path) -> None:
    clock = SteppedClock(paris(2026, 10, 22, 12))
    wall = clock.time
    cold = WaterMeter(1, "21000001", "SAP", 0x15, 0x16, wall, daily_litres=320,
                      base_litres=152_340, history_months=2, tz="Europe/Paris")
    hot = WaterMeter(3, "21000003", "SAP", 0x15, 0x06, wall, daily_litres=120,
                     base_litres=41_005, history_months=0, tz="Europe/Paris")  # keeps nothing
    sim = MBusSimulator([cold, hot], wall)
    await sim.start()
    broker = persistent_broker(tmp_path / "broker")
    broker.start()
    devices = [{"id": "wm-a011", "bus": "meters", "address": 1, "dwelling": "A-011",
                "medium": "cold_water", "poll": "150ms", "timeout": "300ms"},
               {"id": "wm-a012", "bus": "meters", "address": 3, "dwelling": "A-012",
                "medium": "hot_water", "poll": "150ms", "timeout": "300ms"}]
    buses = [{"id": "meters", "driver": "mbus", "port": f"socket://127.0.0.1:{sim.port}"}]
    ops_key = Ed25519PrivateKey.generate()  # the operations team's command key
    (tmp_path / "ops.pub").write_bytes(signing.public_pem(ops_key))
    path = write_config(tmp_path, broker_port=broker.port, modbus_port=1, devices=devices,
                        buses=buses, commands={"public_key": str(tmp_path / "ops.pub")})
    config = load(path)
    stored_truth: dict[str, int] = {}
    try:
        async with observe(broker.port, f"{ROOT}/#", client_id="billing-backend") as observer:
            async with running_agent(config, clock) as agent:
                await polled_after(agent, clock.time())
                await day_by_day(agent, clock, date(2026, 10, 23), date(2026, 10, 31))
                broker.stop()  # the broker is down across the month start
                await day_by_day(agent, clock, date(2026, 11, 1), date(2026, 11, 2))
                stored_truth["2026-11-01"] = int(cold.litres(paris(2026, 11, 1)))
                assert not [b for b in idx_messages(observer) if b["date"] >= "2026-11-01"]
                broker.start()
                await day_by_day(agent, clock, date(2026, 11, 3), date(2026, 11, 9))
            clock.jump_to(paris(2026, 11, 11, 9))  # the gateway is off over two midnights
            async with running_agent(config, clock) as agent:
                await polled_after(agent, clock.time())
                await day_by_day(agent, clock, date(2026, 11, 12), date(2026, 11, 15))
                clock.jump_to(paris(2026, 11, 15, 12))
                new = WaterMeter(1, "21000099", "SAP", 0x15, 0x16, wall, daily_litres=320,
                                 base_litres=4, history_months=2, tz="Europe/Paris")
                sim.replace(sim.meters[1], new)
                await polled_after(agent, clock.time() + 0.5)
                await day_by_day(agent, clock, date(2026, 11, 16), date(2026, 11, 20))
                hot.base_litres -= 3000  # the hot-water index reads 3 m3 lower for a while
                await polled_after(agent, clock.time() + 0.5)
                hot.base_litres += 3000
                await polled_after(agent, clock.time() + 0.5)
                await day_by_day(agent, clock, date(2026, 11, 21), date(2026, 11, 30))
            clock.jump_to(paris(2026, 12, 1, 10))  # off over the month's last midnight
            async with running_agent(config, clock) as agent:
                await polled_after(agent, clock.time())
                stored_truth["2026-12-01"] = int(new.litres(paris(2026, 12, 1)))
                await day_by_day(agent, clock, date(2026, 12, 2), date(2026, 12, 2))
                answer = await agent.commands(json.dumps(signing.sign({
                    "id": "idx-1", "op": "meter.index", "exp": int(clock.time()) + 60,
                    "aud": config.gateway.id,
                    "args": {"dev": "wm-a011", "from": "2026-11-01", "to": "2026-11-03"}},
                    ops_key)).encode())
                assert answer is not None and answer["status"] == "succeeded", answer
                assert answer["result"]["resent"] == 3
                figures = agent.health()["billing"]
                assert figures["meters"] == 2 and figures["indexes"] >= 2  # this session's
                await observer.wait_for(lambda ms: sum(
                    1 for b in idx_messages(observer) if b.get("resent")) >= 3)
                await observer.wait_for(lambda ms: all(
                    any(b["dev"] == d and b["date"] == "2026-12-02" for b in idx_messages(
                        observer)) for d in DEVICES))
    finally:
        broker.stop()
        await sim.stop()

    received = [b for b in idx_messages(observer) if not b.get("resent")]
    for body in received[:3] + [b for b in received if b["src"] != "reading"][:4]:
        assert_valid("idx.json", body)
    mids: dict[tuple[str, str], set[str]] = {}
    for body in received:
        mids.setdefault((body["dev"], body["date"]), set()).add(body["mid"])
    expected_days = [(date(2026, 10, 23) + timedelta(days=i)).isoformat() for i in range(41)]
    backfilled = [("wm-a011", "2026-09-01"), ("wm-a011", "2026-10-01")]  # kept by the meter
    assert sorted(mids) == sorted([(d, day) for d in DEVICES for day in expected_days]
                                  + backfilled)
    assert all(index_of(received, *key)["src"] == "meter" for key in backfilled)
    assert all(len(found) == 1 for found in mids.values()), "a boundary with two mids"
    assert len({m for found in mids.values() for m in found}) == len(mids)
    resent = [b for b in idx_messages(observer) if b.get("resent")]
    assert {b["mid"] for b in resent} <= {m for found in mids.values() for m in found}

    index = {(b["dev"], b["date"]): b for b in received}
    # The 25-hour day of the clock change.
    assert index["wm-a011", "2026-10-26"]["e"][0]["bt"] - \
        index["wm-a011", "2026-10-25"]["e"][0]["bt"] == 25 * 3600
    # Held back by the broker outage, then delivered, exact: the meter's own set-day value.
    nov1 = index["wm-a011", "2026-11-01"]
    assert nov1["hist"] is True and nov1["src"] == "meter" and nov1["month"] is True
    assert nov1["raw"] == {"digits": str(stored_truth["2026-11-01"]), "scale": "0.001",
                           "unit": "m3"}
    # What a reading-based index says is what the meter's reading said over tm.
    tm = {(m.topic.split("/")[-2], round(m.body["e"][0]["bt"], 2)): {r["n"]: r for r in m.body["e"]}
          for m in observer.messages if m.topic.endswith("/tm")}
    checked = 0
    for (dev, _), body in index.items():
        when = round(body["e"][0]["bt"] + body["offset"], 2) if body["src"] == "reading" else None
        if (dev, when) in tm:
            assert tm[dev, when]["volume"]["v"] == body["e"][0]["v"]
            checked += 1
    assert checked >= 40
    # Off over two midnights: no stored daily values, so interpolated and flagged.
    for dev in DEVICES:
        for day in ("2026-11-10", "2026-11-11"):
            assert index[dev, day]["src"] == "interpolated"
            assert {"before", "after"} <= set(index[dev, day])
    # Off over 1 December: the cold meter keeps its month-end value, the hot one does not.
    dec1 = index["wm-a011", "2026-12-01"]
    assert dec1["src"] == "meter" and dec1["raw"]["digits"] == str(stored_truth["2026-12-01"])
    assert index["wm-a012", "2026-12-01"]["src"] == "interpolated"
    # The replaced meter and the index that went down, on evt.
    events = [m.body for m in observer.messages if m.topic.endswith("/evt")]
    replaced = [e for e in events if e["type"] == "meter.replaced"]
    assert len({e["mid"] for e in replaced}) == 1
    assert replaced[0]["old"]["meter"] == "21000001" and replaced[0]["new"]["meter"] == "21000099"
    drops = [e for e in events if e["type"] == "index.decrease"]
    assert {e["dev"] for e in drops} == {"wm-a012"} and len({e["mid"] for e in drops}) == 1
    for event in replaced[:1] + drops[:1]:
        assert_valid("evt.json", event)
    births = [m.body for m in observer.messages if m.topic.endswith("/birth")]
    assert {(d["id"], d.get("dwelling"), d.get("medium")) for d in births[-1]["devices"]} == {
        ("wm-a011", "A-011", "cold_water"), ("wm-a012", "A-012", "hot_water")}

    # The export of November is what went over MQTT.
    result = CliRunner().invoke(cli, ["meters", "export", "--month", "2026-11", "--json",
                                      "--config", str(path)])
    assert result.exit_code == 0, result.output
    rows = {r["device"]: r for r in json.loads(result.output)["meters"]}
    assert set(rows) == set(DEVICES)
    for dev, row in rows.items():
        start, end = index[dev, "2026-11-01"], index[dev, "2026-12-01"]
        assert (row["start"]["mid"], row["start"]["x"]) == (start["mid"], start["x"])
        assert (row["end"]["mid"], row["end"]["x"]) == (end["mid"], end["x"])
        assert row["consumption"]["x"] == end["consumption"]["month"]["x"]
    cold_row = rows["wm-a011"]
    assert cold_row["meter"] == "21000001 -> 21000099" and cold_row["dwelling"] == "A-011"
    last_old = replaced[0]["old"]["last"]["raw"]["digits"]
    first_new = replaced[0]["new"]["first"]["raw"]["digits"]
    spans = (int(last_old) - stored_truth["2026-11-01"]) + (stored_truth["2026-12-01"]
                                                            - int(first_new))
    assert cold_row["consumption"]["x"] == f"{spans / 1000:.3f}"
    assert cold_row["start"]["provenance"] == "meter 2026-11-01"
    assert rows["wm-a012"]["end"]["provenance"].startswith("interpolated")
    csv_out = CliRunner().invoke(cli, ["meters", "export", "--month", "2026-11", "--csv",
                                       "--config", str(path)])
    assert csv_out.exit_code == 0 and csv_out.output.count("\n") == 3
