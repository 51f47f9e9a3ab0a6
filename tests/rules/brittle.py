"""Source of a third-party rule type whose code raises where it is told to (tests only).

It is installed through a dist-info entry point (tests.plugins), never imported from here."""

BRITTLE = '''
from typing import Literal

from rules.builtin.base import PointRuleBase, Rule, number_of


class BrittleConfig(PointRuleBase):
    type: Literal["brittle"] = "brittle"
    fail_in: Literal["build", "reading", "tick", "export"] = "reading"
    above: float = 0.0  # `reading`: raise on a value above this; below it, a working rule


class BrittleRule(Rule[BrittleConfig]):
    config_model = BrittleConfig

    def __init__(self, config, *, tz=None):
        super().__init__(config, tz=tz)
        if config.fail_in == "build":
            raise RuntimeError("cannot build")
        self.seen = 0

    def on_reading(self, reading, now):
        value = number_of(reading)
        self.seen += 1
        if self.config.fail_in == "reading" and value is not None and value > self.config.above:
            raise ZeroDivisionError("a rule bug on " + reading.name)
        self.active = value is not None and value > self.config.above

    def tick(self, now):
        if self.config.fail_in == "tick":
            raise KeyError("tick bug")

    def next_deadline(self):
        return 0.0 if self.config.fail_in == "tick" else None

    def export_state(self):
        if self.config.fail_in == "export":
            return {"not json": object()}
        return {"seen": self.seen}
'''
