"""Local alarm rules: the engine, the alarm lifecycle and the built-in rule types.

The agent uses `RuleEngine` and `AlarmEvent`; a third-party rule type subclasses `Rule` (and
`RuleBase` for its parameters) and registers itself in the `batigate.rules` entry-point group.
"""

from rules.alarm import AlarmEvent
from rules.builtin.base import Rule, RuleBase
from rules.engine import RuleEngine

__all__ = ["AlarmEvent", "Rule", "RuleBase", "RuleEngine"]
