"""`meter.index {dev, from, to}`: send a meter's stored boundary indexes again.

It changes nothing on the gateway and repeats what was already published, so it is registered
without `writes` (a gateway that requires signatures only for writes accepts it unsigned). It is
not among the HARMLESS operations of a gateway without a command key: the rows it adds are never
dropped by the overflow policy, so an anonymous flood of it could fill the outbox. Each index
goes out under the `mid` it first had, flagged `resent`.
"""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any

from pydantic import Field, StringConstraints

from agent.billing import boundaries
from agent.billing.service import MAX_RESEND
from agent.commands.models import Code, Ident, Outcome, Problem, _Args, ok
from agent.commands.registry import Call, op
from agent.commands.targets import device_named

Day = Annotated[str, StringConstraints(pattern=r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$")]


class MeterIndexArgs(_Args):
    dev: Ident
    from_: Day | float = Field(alias="from", description="first boundary: a local date "
                               "(YYYY-MM-DD) or epoch seconds")
    to: Day | float = Field(description="last boundary, included: a local date or epoch seconds")


def _instant(value: str | float, tz: Any, what: str) -> float:
    if isinstance(value, str):
        try:
            return boundaries.midnight(date.fromisoformat(value), tz)
        except ValueError:
            raise Problem(Code.BAD_REQUEST, f"{what}: {value!r} is not a date") from None
    return float(value)


@op("meter.index", MeterIndexArgs)
async def meter_index(call: Call, args: MeterIndexArgs) -> Outcome:
    """Publish again the stored boundary indexes of one meter between from and to (included), each
    under its first mid with resent true; at most 1000 per command."""
    agent = call.agent
    device = device_named(agent, args.dev)
    billing = agent.billing
    if device.id not in billing.meters:
        raise Problem(Code.NOT_FOUND, f"{device.id} is not a meter (give it dwelling: or "
                      "medium:, or a meter profile)")
    first = _instant(args.from_, billing.tz, "from")
    last = _instant(args.to, billing.tz, "to")
    if last < first:
        raise Problem(Code.BAD_REQUEST, "to is before from")
    sent = billing.resend(device.id, first, last)
    if not sent:
        raise Problem(Code.NOT_FOUND, f"no stored index of {device.id} between {args.from_} and "
                      f"{args.to}")
    return ok({"dev": device.id, "resent": len(sent), "limit": MAX_RESEND,
               "indexes": [{"date": s["date"], "mid": s["mid"], "src": s["src"], "x": s["x"]}
                           for s in sent]})
