"""The outbox seen from a command: its figures, and a resend of retained messages."""

from __future__ import annotations

from agent.commands.models import Code, NoArgs, Outcome, Problem, ResendArgs, ok
from agent.commands.registry import Call, op
from agent.store.outbox import ResendUnavailable


@op("buffer.stats")
async def buffer_stats(call: Call, args: NoArgs) -> Outcome:
    """Outbox depth, oldest age and sequence range."""
    return ok(call.agent.outbox.stats())


@op("buffer.resend", ResendArgs, writes=True)
async def buffer_resend(call: Call, args: ResendArgs) -> Outcome:
    """Publish again, with their seq and mid, the delivered messages still retained
    (`buffer.retain`); 501 when the gateway retains nothing."""
    if args.to_seq < args.from_seq:
        raise Problem(Code.BAD_REQUEST, "to_seq is lower than from_seq")
    try:
        result = call.agent.outbox.resend(args.from_seq, args.to_seq)
    except ResendUnavailable:
        raise Problem(Code.NOT_IMPLEMENTED, "buffer.resend is not available: buffer.retain is "
                      "not set, so a message is deleted once delivered") from None
    if result["resent"] == 0 and result["already_queued"] == 0:
        raise Problem(Code.NOT_FOUND, f"seq {args.from_seq}..{args.to_seq} is not retained; "
                      f"retained: {result['retained']}")
    return ok(result)
