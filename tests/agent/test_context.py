"""The `AgentContext` seam: commands, the control socket and health use only what it declares,
and the supervisor's `Agent` provides all of it."""

from __future__ import annotations

import ast
from pathlib import Path

from agent.config import loader as config_mod
from agent.runtime import supervisor
from agent.sdk.clock import SystemClock
from agent.runtime.context import AgentContext
from tests.commands.conftest import config_doc, write

ROOT = Path(__file__).parents[2]
# The code on the far side of the seam (provisioning/ is meant to depend on agent.sdk only and
# is left out until that exists).
USERS = sorted({"agent/runtime/control.py", "agent/runtime/health.py", *(
    str(p.relative_to(ROOT)) for p in (ROOT / "agent/commands").glob("*.py"))} | {
    # and every module that takes the context by its type (wire profiles, the local page, ...)
    str(p.relative_to(ROOT)) for p in (ROOT / "agent").rglob("*.py")
    if ": AgentContext" in p.read_text(encoding="utf-8")})


def declared() -> set[str]:
    return {name for name in dir(AgentContext) if not name.startswith("_")} | set(
        AgentContext.__annotations__)


def used(path: str) -> dict[str, int]:
    """Members read as `agent.X`, `self.agent.X` or `call.agent.X`, with a line of each."""
    found: dict[str, int] = {}
    for node in ast.walk(ast.parse((ROOT / path).read_text())):
        if not isinstance(node, ast.Attribute):
            continue
        base = node.value
        if (isinstance(base, ast.Name) and base.id == "agent") or (
                isinstance(base, ast.Attribute) and base.attr == "agent"):
            found.setdefault(node.attr, node.lineno)
    return found


def test_the_users_read_nothing_the_context_does_not_declare() -> None:
    members = declared()
    stray = [f"{path}:{line}: agent.{name}" for path in USERS
             for name, line in used(path).items() if name not in members]
    assert not stray, "declare these in agent/runtime/context.py or do not use them:\n" + "\n".join(stray)
    assert {"config", "pipeline", "uplink", "pollers"} <= {n for p in USERS for n in used(p)}


def test_no_seam_is_left_untyped() -> None:
    # `agent: Any` hid what a module used of the agent; the context names it (issue 14).
    untyped = [f"{p.relative_to(ROOT)}:{n}" for p in (ROOT / "agent").rglob("*.py")
               for n, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1)
               if "agent: Any" in line]
    assert not untyped, untyped
    assert "agent/wire/homeassistant.py" in USERS and "agent/local/server.py" in USERS


def test_the_running_agent_is_an_agent_context(tmp_path: Path) -> None:
    agent = supervisor.Agent(config_mod.load(write(tmp_path, config_doc(tmp_path))),
                             SystemClock())
    try:
        assert isinstance(agent, AgentContext)
    finally:
        agent.outbox.close()


def test_a_member_missing_from_an_agent_is_seen() -> None:
    class Partial:
        config = clock = session = started = outbox = pipeline = pollers = engine = None
        uplink = commands = group = restart_requested = None

        def health(self) -> dict:
            return {}

    assert not isinstance(Partial(), AgentContext)  # no apply_config
