"""Typed models of the config file (DESIGN §3.1): the gateway-wide sections. The bus, device, point
and rule entries that drivers and rule types subclass are in `agent/sdk/config.py`."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, field_validator, model_validator

from agent.sdk.config import Ident, Strict
from agent.sdk.durations import Duration

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


class HomeAssistantConfig(Strict):
    """`mqtt.homeassistant`: the Home Assistant wire profile (agent/wire/homeassistant.py)."""

    discovery_prefix: str = Field("homeassistant", pattern=r"^[A-Za-z0-9_-]+(/[A-Za-z0-9_-]+)*$")
    discovery: Literal["device", "entity"] = Field(
        "device", description="device: one config per device (Home Assistant 2024.11 and later); "
        "entity: one classic config per entity, {prefix}/{component}/{node}/{point}/config "
        "(every release, for Home Assistant older than 2024.11)")
    writes: bool = Field(False, description="writable points become number/switch entities whose "
                         "set topics go through point.write; off: they are read-only sensors "
                         "(the set topics are not signed: the broker's ACL is the guard)")


class ThingsBoardConfig(Strict):
    """`mqtt.thingsboard`: the ThingsBoard gateway API profile (agent/wire/thingsboard.py)."""

    writes: bool = Field(False, description="RPC point.write is carried out; off: refused "
                         "(RPC is not signed: the broker's ACL is the guard)")


SPARKPLUG_ID = r"^[^+#/]{1,64}$"  # Sparkplug B 3.0 §4.1: no '+', '#' or '/' in an id


class SparkplugConfig(Strict):
    """`mqtt.sparkplug`: the Sparkplug B profile (agent/wire/sparkplug.py and its own MQTT
    session, agent/uplink/sparkplug.py)."""

    group: str = Field("batigate", pattern=SPARKPLUG_ID, description="Sparkplug group id")
    node: str | None = Field(None, pattern=SPARKPLUG_ID,
                             description="edge node id; the gateway id when absent")
    primary_host: str | None = Field(None, pattern=SPARKPLUG_ID,
                                     description="publish only while spBv1.0/STATE/{this} is "
                                     "online (the outbox keeps the rows meanwhile)")
    writes: bool = Field(False, description="DCMD point values are carried out as point.write; "
                         "off: refused (DCMD is not signed: the broker's ACL is the guard)")


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
    profiles: list[Literal["native", "homeassistant", "sparkplug", "thingsboard"]] = Field(
        ["native"], description="wire profiles fed from the one outbox (agent/wire/); native is "
        "always published, the reference")
    homeassistant: HomeAssistantConfig = Field(default_factory=HomeAssistantConfig)
    thingsboard: ThingsBoardConfig = Field(default_factory=ThingsBoardConfig)
    sparkplug: SparkplugConfig = Field(default_factory=SparkplugConfig)

    @field_validator("profiles")
    @classmethod
    def _native_first(cls, value: list[str]) -> list[str]:
        if "native" not in value:
            raise ValueError("native is always published (the reference): list it too")
        if len(set(value)) != len(value):
            raise ValueError("a profile is listed twice")
        return value

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
    """The `update:` section: agent and whole-system (RAUC) updates by command (`update.install`,
    images/README.md)."""

    public_key: Path | None = Field(
        None, description="Ed25519 release public key (PEM or base64 raw) that signs bundles; "
                          "without it update.install is refused")
    releases: Path = Field(Path("/var/lib/batigate/releases"),
                           description="release venvs, the current/previous links, the trial")
    health_within: Duration = Field(600.0, ge=30, description="the new release must reach the "
                                    "broker and publish its birth within this, or is rolled back")
    max_mb: float = Field(200, gt=0, description="a larger bundle is refused before download")
    download_within: Duration = Field(1800.0, ge=1, description="the whole download must end "
                                      "within this, however slowly the server sends")
    rootfs_max_mb: float = Field(2048, gt=0, description="kind rootfs: a larger RAUC bundle is "
                                 "refused before download")
    rootfs_install_within: Duration = Field(1800.0, ge=1, description="kind rootfs: `rauc "
                                            "install` must end within this (an SD card is slow)")
    reboot_request: Path = Field(Path("/run/batigate/reboot"), description="kind rootfs: the "
                                 "agent writes this file and a root path unit reboots")


class BillingConfig(Strict):
    """The `billing:` section: boundary indexes of the meters (agent/billing/README.md)."""

    timezone: str = Field("Europe/Paris", description="the site's zone: local midnights and "
                                                      "month starts are the billing boundaries")
    max_offset: Duration = Field(900.0, gt=0, description="a reading this close to a boundary "
                                 "is its index; farther ones are interpolated")
    keep: Duration = Field(400 * 86400.0, ge=86400, description="boundary indexes are kept this "
                           "long for meter.index and `batigate meters export`")

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError  # noqa: PLC0415

        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r} (e.g. Europe/Paris)") from None
        return value


