"""The local status page and read API (off by default; `local:` section of the config).

    browser / on-site service ──HTTP, token──► agent.local.http (bounded asyncio server)
                                                 └─► api: /  (page)  /api/v1/{points,devices,
                                                       alarms,health}  /api/v1/openapi.json

Read-only: GET and HEAD only; nothing here can change the gateway. See README.md beside this file.
"""

from __future__ import annotations

from typing import Any


def page_url(config: Any) -> str | None:
    """The page's address with its token, for a technician on the gateway (None when off)."""
    local = getattr(config, "local", None)
    if local is None or not local.listen:
        return None
    from agent.local.token import load_or_create  # noqa: PLC0415

    try:
        token = load_or_create(local.token_file)
    except OSError:
        return f"http://{local.listen}/"
    return f"http://{local.listen}/?token={token}"
