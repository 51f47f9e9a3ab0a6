"""Bills on the real index: a provable meter index at every local midnight and month start.

    boundaries  local midnights and month starts in the site's zone (23/25-hour days)
    meters      which devices are meters; their index, stored-value and id points
    index       one meter: boundary indexes with provenance, integrity, consumption (pure)
    stored      the meter's stored dated values, placed on the midnight they are the index of
    obs         one reading of the index as billing keeps it
    service     between the pipeline and the outbox: idx messages, events, history
    command     the `meter.index` command (re-send)
    export      `batigate meters export --month YYYY-MM`

See agent/billing/README.md.
"""

from agent.billing.service import Billing

__all__ = ["Billing"]
