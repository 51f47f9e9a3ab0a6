"""What travels on `cmd/req` and `cmd/res` (DESIGN §3.3): the request envelope, the arguments of
every operation, the answer, and the HTTP-like codes.

Arguments are pydantic models in strict mode with unknown keys forbidden, so a wrong type, a
missing or an extra argument is a `400` that names the field, never a half-understood command.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum, StrEnum
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (BaseModel, ConfigDict, Field, StringConstraints, ValidationError,
                      model_validator)

from agent.sdk.config import Strict
from agent.sdk.durations import Duration


class Code(IntEnum):
    OK = 200
    ACCEPTED = 202  # accepted / in_progress: the outcome comes later (or is a restart away)
    BAD_REQUEST = 400  # malformed, wrong types, missing or extra fields, too deeply nested
    UNAUTHORIZED = 401  # unsigned, badly signed, or signed for another gateway
    FORBIDDEN = 403  # not allowed on this point (not writable)
    NOT_FOUND = 404  # unknown device, point, alarm or operation
    CONFLICT = 409  # id reused for another command, or the state forbids it (nothing to confirm)
    GONE = 410  # expired
    TOO_LARGE = 413
    UNPROCESSABLE = 422  # well-formed but the value or config is not acceptable
    FAILED = 500
    NOT_IMPLEMENTED = 501
    UNAVAILABLE = 503  # the device did not answer, or the drivers are not running


class Status(StrEnum):
    ACCEPTED = "accepted"
    IN_PROGRESS = "in_progress"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    REJECTED = "rejected"


class CommandsConfig(Strict):
    """The `commands:` section of gateway.yaml."""

    public_key: Path | None = Field(
        None, description="Ed25519 public key (PEM or base64 raw); when set, commands are signed")
    require_signature: Literal["all", "writes"] = Field(
        "all", description="with a key: sign every command, or only those that change something")
    max_bytes: int = Field(16384, ge=256, le=1_048_576, description="larger requests get 413")
    max_config_bytes: int = Field(262144, ge=1024, le=1_048_576,
                                  description="the limit for config.apply, which carries a file")
    max_ttl: Duration = Field(86400.0, description="an exp further ahead than this is refused")
    skew: Duration = Field(60.0, description="clock difference tolerated on exp")
    cache_size: int = Field(1000, ge=10, le=100_000,
                            description="answers of anonymous read-only commands kept for replays "
                                        "(signed and state-changing ones are kept until they "
                                        "expire, whatever this says)")
    unsigned: Literal["readonly", "allow"] = Field(
        "readonly", description="without public_key: readonly runs only the harmless commands "
        "(ping, rebirth, health, point.read, poll.now, buffer.stats); allow runs every command "
        "unsigned (labs only: a warning at every start)")
    audit_days: float = Field(30, gt=0, le=3650, description="executed and signed commands stay "
                              "this long in the audit trail (anonymous refusals: the last 1000)")

    @model_validator(mode="after")
    def _one_way_to_trust(self) -> CommandsConfig:
        if self.public_key is not None and self.unsigned == "allow":
            raise ValueError("unsigned: allow (a lab setting) and public_key contradict each "
                             "other: remove one")
        return self

    @property
    def auth(self) -> str:
        """The command mode the gateway reports in birth, health, status and config check."""
        if self.public_key is not None:
            return "signed" if self.require_signature == "all" else "signed-writes"
        return "unsigned-allow" if self.unsigned == "allow" else "unsigned-readonly"


class Problem(Exception):
    """A command that cannot be carried out: becomes a `rejected` (4xx) or `failed` (5xx) answer."""

    def __init__(self, code: Code, reason: str, result: Any = None) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason
        self.result = result


@dataclass(frozen=True, slots=True)
class Outcome:
    status: Status
    code: Code
    result: Any = None


def ok(result: Any = None) -> Outcome:
    return Outcome(Status.SUCCEEDED, Code.OK, result)


def answer(cmd_id: str | None, outcome: Outcome | Problem, *, op: str | None,
           ts: float) -> dict[str, Any]:
    """The response document; `error` is there exactly when the command did not succeed."""
    body: dict[str, Any] = {"id": cmd_id}
    if isinstance(outcome, Problem):
        # 501 is a refusal (this gateway does not do that), not a failure while doing it.
        failed = outcome.code >= 500 and outcome.code != Code.NOT_IMPLEMENTED
        status = Status.FAILED if failed else Status.REJECTED
        body.update(status=status.value, code=int(outcome.code), error=outcome.reason)
        result = outcome.result
    else:
        body.update(status=outcome.status.value, code=int(outcome.code))
        result = outcome.result
        if outcome.status is not Status.SUCCEEDED:
            body["error"] = {Status.ACCEPTED: "accepted; the outcome follows",
                             Status.IN_PROGRESS: "in progress; the outcome follows"}.get(
                                 outcome.status, outcome.status.value)
    if op is not None:
        body["op"] = op
    body["ts"] = round(ts, 3)
    if result is not None:
        body["result"] = result
    return body


# -- the request ------------------------------------------------------------------------------

CmdId = Annotated[str, StringConstraints(min_length=1, max_length=128, pattern=r"^[\x21-\x7e]+$")]
Ident = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9-]{0,62}$")]
PointName = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]{0,62}$")]
Text = Annotated[str, StringConstraints(max_length=200)]


class _Args(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class Request(_Args):
    id: CmdId = Field(description="unique per command; a repeated id is answered from the cache")
    op: Annotated[str, StringConstraints(min_length=1, max_length=64)]
    args: dict[str, Any] = Field(default_factory=dict)
    exp: int | float = Field(description="epoch seconds after which the command is void")
    aud: Text | None = Field(None, description="the gateway id the command is meant for")
    by: Text | None = Field(None, description="who sends it (operator or service), for the audit")
    sig: Annotated[str, StringConstraints(max_length=200)] | None = Field(
        None, description="base64 Ed25519 signature of the canonical request without sig")


class NoArgs(_Args):
    pass


class DeviceArgs(_Args):
    dev: Ident


class PointArgs(_Args):
    dev: Ident
    n: PointName


class WriteArgs(_Args):
    dev: Ident
    n: PointName
    v: bool | int | float = Field(description="in the unit the config declares for the point")


class ConfigApplyArgs(_Args):
    config: Annotated[str, StringConstraints(max_length=1_000_000)] | dict[str, Any] = Field(
        description="the whole gateway.yaml, as YAML text or as an object")
    confirm_within: float = Field(300.0, ge=30, le=86400,
                                  description="seconds; rolled back unless config.confirm comes")


class AlarmAckArgs(_Args):
    alarm: Annotated[str, StringConstraints(min_length=1, max_length=128)]
    note: Text | None = None


class MaintenanceArgs(_Args):
    dev: Ident
    until: float | None = Field(description="epoch seconds; null ends the maintenance now")


class ResendArgs(_Args):
    from_seq: int = Field(ge=1)
    to_seq: int = Field(ge=1)


LogLevelName = Literal["debug", "info", "warning", "error", "critical"]


class LogLevelArgs(_Args):
    level: LogLevelName
    logger: Annotated[str, StringConstraints(max_length=100, pattern=r"^[A-Za-z0-9_.]*$")] = ""


class LogGetArgs(_Args):
    lines: int = Field(100, ge=1, le=1000)
    level: LogLevelName | None = None


class CountArgs(_Args):
    lines: int = Field(100, ge=1, le=1000)


class AuditArgs(_Args):
    lines: int = Field(100, ge=1, le=1000)
    noise: bool = Field(True, description="false: only the kept entries (signed, executed, "
                        "local), not the anonymous refusals and harmless commands")


def describe(error: ValidationError, prefix: str) -> str:
    """`args.v: Input should be a valid number; args.extra: unknown argument` (first few)."""
    parts = []
    for item in error.errors()[:4]:
        where = ".".join(str(p) for p in (prefix, *item["loc"]) if p != "")
        if item["type"] == "extra_forbidden":
            what = "unknown field"
        elif item["type"] == "missing":
            what = "required, missing"
        else:
            what = str(item["msg"])
        parts.append(f"{where}: {what}" if where else what)
    more = len(error.errors()) - 4
    return "; ".join(parts) + (f" (and {more} more)" if more > 0 else "")
