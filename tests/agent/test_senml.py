"""The telemetry body: SenML records with exactly one value each, the points without one apart."""

from __future__ import annotations

import cbor2

from agent.uplink import senml
from agent.sdk.models import Quality, Reading
from tests.integration.test_schemas import assert_valid

T = 1767225660.0


def reading(name: str, value: object, quality: Quality = Quality.GOOD, unit: str | None = None,
            ts: float = T) -> Reading:
    return Reading("vmc-b", name, value, unit, ts, quality)  # type: ignore[arg-type]


def envelope(body: dict[str, object]) -> dict[str, object]:
    return {"v": 1, "gw": "gw-1", "sess": 1, "seq": 1,
            "mid": "0190d2c4-7f1e-7a51-9c3b-2f6d1e0b9a77", "ts": T, "hist": False, **body}


def test_a_point_without_a_value_is_no_record_but_is_listed_in_bad() -> None:
    # Issue #15: RFC 8428 §4.2 wants exactly one value per record; a refused point had none.
    body = senml.telemetry("gw-1", "vmc-b", [
        reading("refused", None, Quality.BAD),
        reading("exhaust_pressure", 112.5, unit="Pa"),
        reading("early", 3, Quality.UNCERTAIN, ts=T + 0.25),
        reading("fan_fault", False),
    ])
    assert body == {
        "e": [{"bn": "urn:dev:bgw:gw-1:vmc-b:", "bt": T, "n": "exhaust_pressure", "u": "Pa",
               "v": 112.5},
              {"n": "early", "t": 0.25, "v": 3, "q": "uncertain"},
              {"n": "fan_fault", "vb": False}],
        "bad": [{"n": "refused"}],
    }
    assert list(body) == ["e", "bad"]  # `e` first: the uplink splices the stored JSON after it
    assert_valid("tm.json", envelope(body))


def test_a_poll_where_every_point_failed_has_an_empty_pack() -> None:
    body = senml.telemetry("gw-1", "vmc-b", [reading("a", None, Quality.BAD),
                                             reading("b", None, Quality.BAD)])
    assert body == {"e": [], "bad": [{"n": "a"}, {"n": "b"}]}
    assert_valid("tm.json", envelope(body))
    decoded = cbor2.loads(senml.encode(envelope(body), "cbor"))
    assert decoded["e"] == [] and decoded["bad"] == [{"n": "a"}, {"n": "b"}]


def test_the_schema_refuses_a_record_without_a_value() -> None:
    from tests.integration.test_schemas import validator

    bad = envelope({"e": [{"bn": "urn:dev:bgw:gw-1:vmc-b:", "bt": T, "n": "x", "q": "bad"}]})
    assert list(validator("tm.json").iter_errors(bad))
    assert list(validator("tm.json").iter_errors(envelope({"e": []})))  # empty: bad is required
