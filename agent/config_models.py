"""Typed models of the config file (DESIGN §3.1). Drivers and rule types subclass the bases here."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (BaseModel, ConfigDict, Field, SecretStr, StringConstraints, field_validator,
                      model_validator)

from agent import units
from agent.durations import Duration

Ident = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9-]{0,62}$")]
PointName = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]{0,62}$")]


class Strict(BaseModel):
    """Unknown keys are typos: reject them."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class GatewayConfig(Strict):
    id: Ident = Field(description="MQTT client id and certificate CN")
    site: Ident


class TlsConfig(Strict):
    ca: Path | None = Field(None, description="CA bundle; the system store when absent")
    cert: Path | None = None
    key: Path | None = None

    @model_validator(mode="after")
    def _cert_with_key(self) -> TlsConfig:
        if (self.cert is None) != (self.key is None):
            raise ValueError("cert and key go together: give both or neither")
        return self


class MqttConfig(Strict):
    host: str
    port: int = Field(8883, ge=1, le=65535)
    tls: TlsConfig | None = Field(default_factory=TlsConfig,
                                  description="on unless `tls: false` (lab brokers only)")
    namespace: str = Field("bgw/v1", pattern=r"^[A-Za-z0-9_-]+(/[A-Za-z0-9_-]+)*$")
    encoding: Literal["json", "cbor"] = "json"
    protocol: Literal["5", "3.1.1"] = "5"
    username: str | None = None
    password: SecretStr | None = None
    keepalive: Duration = 30.0
    reconnect_max: Duration = Field(60.0, description="cap of the reconnect backoff")
    max_packet_kb: int = Field(1024, ge=64, le=65536,
                               description="largest MQTT packet taken in (KiB): announced in "
                                           "CONNECT (MQTT 5), enforced while reading (both); "
                                           "above commands.max_config_bytes")

    @field_validator("tls", mode="before")
    @classmethod
    def _tls_switch(cls, value: Any) -> Any:
        if value is False:
            return None
        if value is True or value is None:
            return {}
        return value

    @field_validator("protocol", mode="before")
    @classmethod
    def _protocol_text(cls, value: Any) -> Any:
        return str(value) if isinstance(value, int | float) else value


class BufferConfig(Strict):
    path: Path = Path("/var/lib/batigate/outbox.db")
    max_mb: float = Field(256, gt=0)
    commit_interval: Duration = Field(1.0, description="telemetry is committed at least this often")
    max_age: Duration | None = Field(None, description="telemetry older than this is dropped")
    memory_mb: float = Field(8, gt=0, description="held in memory while the disk refuses writes")
    retain: Duration | None = Field(None, description="delivered messages kept for buffer.resend")
    release: Literal["puback", "backend"] = Field(
        "puback", description="what deletes a message: the broker's PUBACK, or the backend's "
        "watermark on {root}/ack")
    backlog_rate: float = Field(50, ge=0, description="messages/s for an outage's backlog; 0: "
                                "unpaced")
    backlog_burst: int = Field(500, ge=1, description="backlog messages sent before pacing")


class HealthConfig(Strict):
    interval: Duration = 60.0


class ControlConfig(Strict):
    socket: Path = Field(Path("/run/batigate/control.sock"),
                         description="local Unix socket of `batigate status/read/write` "
                                     "(mode 0660, group batigate when it exists)")
    max_clients: int = Field(16, ge=1, le=1024,
                             description="control clients served at once; more are refused "
                                         "(and never more than a quarter of the descriptors)")
    idle_timeout: Duration = Field(30.0, gt=0, description="a control client silent this long "
                                                            "is disconnected")


class UpdateConfig(Strict):
    """The `update:` section: agent updates by command (`update.install`, images/README.md)."""

    public_key: Path | None = Field(
        None, description="Ed25519 release public key (PEM or base64 raw) that signs bundles; "
                          "without it update.install is refused")
    releases: Path = Field(Path("/var/lib/batigate/releases"),
                           description="release venvs, the current/previous links, the trial")
    health_within: Duration = Field(600.0, ge=30, description="the new release must reach the "
                                    "broker and publish its birth within this, or is rolled back")
    max_mb: float = Field(200, gt=0, description="a larger bundle is refused before download")


class BusConfig(Strict):
    id: Ident
    driver: str


class PointConfig(Strict):
    name: PointName
    unit: str | None = None
    writable: bool = False
    min: float | None = Field(None, description="lowest value a write may set")
    max: float | None = Field(None, description="highest value a write may set")
    description: str = ""
    # Semantics for the birth inventory (DESIGN §3.2): what the point is, not how it is read.
    kind: str | None = Field(None, description="sensor, cmd, sp, alarm, status or counter")
    brick: str | None = Field(None, description="Brick class, e.g. brick:Water_Level_Sensor")
    haystack: list[str] | None = Field(None, description="Haystack tags, e.g. [water, level]")

    @field_validator("unit")
    @classmethod
    def _known_unit(cls, value: str | None) -> str | None:
        units.normalize(value)
        return value


class DeviceConfig(Strict):
    id: Ident
    bus: Ident
    address: int | None = None
    profile: str | None = None
    poll: Duration = 30.0
    timeout: Duration = Field(1.0, description="a request unanswered for this long is a timeout")
    points: list[PointConfig] = Field(default_factory=list)

    @model_validator(mode="after")
    def _unique_points(self) -> DeviceConfig:
        seen: set[str] = set()
        for point in self.points:
            if point.name in seen:
                raise ValueError(f"point {point.name!r} is declared twice")
            seen.add(point.name)
        return self


class RuleConfig(Strict):
    """Base of every rule type's parameters; `rules/` registers the types."""

    id: Ident
    type: str
    severity: Literal["critical", "major", "minor", "warning", "info"] = "major"

    def points(self) -> list[str]:
        """The `dev/point` references this rule reads, checked against the devices."""
        return []
