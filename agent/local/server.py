"""Supervisor task of the local page and API: token, history sampling, the HTTP server."""

from __future__ import annotations

import asyncio
import logging

from agent.display.snapshot import snapshot
from agent.i18n import language
from agent.local.api import Api
from agent.local.config import split_address
from agent.local.history import History
from agent.local.http import Server
from agent.local.token import load_or_create
from agent.runtime.context import AgentContext

log = logging.getLogger(__name__)

SAMPLE_EVERY = 10.0  # seconds between two looks at the latest readings for the sparklines


async def serve(agent: AgentContext) -> None:
    local = agent.config.local
    if not local.listen:
        return
    host, port = split_address(local.listen)
    try:
        token = load_or_create(local.token_file)
    except OSError as exc:
        # The page is a convenience: the agent's real job does not stop for it.
        log.error("local page off: token file %s: %s", local.token_file, exc)
        return
    history = History(bucket=local.bucket)
    agent.local_history = history
    api = Api(lambda: snapshot(agent), history, token, language())
    server = Server(api, max_clients=local.max_clients, idle_timeout=local.idle_timeout)
    agent.local_server = server
    try:
        listener = await server.start(host, port)
    except OSError as exc:
        log.error("local page off: cannot listen on %s: %s", local.listen, exc.strerror or exc)
        return
    log.info("local page and API on http://%s/ (token in %s)", local.listen, local.token_file)
    async with listener:
        while True:
            history.sample(agent.pipeline.latest)
            await asyncio.sleep(min(SAMPLE_EVERY, local.bucket))
