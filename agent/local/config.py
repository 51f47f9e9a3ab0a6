"""The `local:` section: the status page and read API, off unless `listen` is given."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, field_validator

from agent.sdk.config import Strict
from agent.sdk.durations import Duration


class LocalConfig(Strict):
    listen: str | None = Field(None, description="HOST:PORT to serve on, e.g. 127.0.0.1:8080 or "
                                                 "the gateway's LAN address; absent: off")
    token_file: Path = Field(Path("/var/lib/batigate/local.token"),
                             description="the access token, created (mode 0600) if absent")
    bucket: Duration = Field(300.0, ge=1, description="sparkline bucket; 288 of them are kept "
                             "(24 h at the default 5m)")
    max_clients: int = Field(16, ge=1, le=1024, description="connections served at once; "
                             "more are refused with 503")
    idle_timeout: Duration = Field(10.0, gt=0, description="a client that sends or reads "
                                   "nothing for this long is dropped")

    @field_validator("listen")
    @classmethod
    def _host_port(cls, value: str | None) -> str | None:
        if value is None:
            return None
        split_address(value)
        return value


def split_address(value: str) -> tuple[str, int]:
    """`127.0.0.1:8080` / `[::1]:8080` -> (host, port); ValueError says what is wrong."""
    host, sep, port = value.rpartition(":")
    if not sep or not host:
        raise ValueError(f"{value!r}: write HOST:PORT, e.g. 127.0.0.1:8080")
    host = host.removeprefix("[").removesuffix("]")
    if not port.isdigit() or not 1 <= int(port) <= 65535:
        raise ValueError(f"{value!r}: the port must be a number from 1 to 65535")
    return host, int(port)
