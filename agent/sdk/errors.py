"""The exception hierarchy shared by the agent, the drivers and the rules."""


class AgentError(Exception):
    """Base of every error raised by batigate code."""


class ConfigError(AgentError):
    """An invalid configuration; `problems` holds one `FILE:LINE: path: message` line each."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


class DriverError(AgentError):
    """Raised by driver code about one bus or device."""


class DeviceUnavailable(DriverError):
    """The device did not answer (timeout, connection refused, garbage): mark it down, back off."""


class PointNotWritable(DriverError):
    """A write was asked on a point that is not declared writable."""


class StoreError(AgentError):
    """The outbox cannot persist; the supervisor decides whether this is fatal."""
