"""The one place that speaks pymodbus: a connection to one bus and its transaction counters.

pymodbus changes its API often (slave= became device_id= in 3.10, payload classes went away), so
everything that names it lives here and the rest of the driver sees plain lists and our errors.

Each request runs under its own deadline (the device's `timeout`), enforced with
`asyncio.timeout` rather than the client's single per-connection timeout, because devices on
one bus may need different timeouts. pymodbus' own retries are off: the poller owns backoff.

Between two frames on an RTU line the master keeps the 3.5-character silence the serial-line
specification requires (`inter_frame_silence`); on TCP, a request that went unanswered may still
be answered late, so the next one waits for that answer or reconnects (`_settle`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import termios
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from pymodbus.client import AsyncModbusSerialClient, AsyncModbusTcpClient
from pymodbus.exceptions import ConnectionException, ModbusIOException
from pymodbus.framer import FramerType
from pymodbus.pdu import ModbusPDU
from serial import SerialException, serial_for_url

from agent.sdk.driver import BusStats
from agent.sdk.errors import DeviceUnavailable
from drivers.modbus.config import ModbusBusConfig, Table

# pymodbus logs every unanswered request at ERROR; the poller already reports down/up once per
# change, so a dead slave would otherwise write a line per poll to the SD card.
_PYMODBUS_LOGGER = logging.getLogger("pymodbus")

# The client's own deadline only has to outlast ours.
_CLIENT_TIMEOUT = 3600.0  # replaced per request by the device's own timeout (see _transact)
_SAFETY_MARGIN = 0.5

EXCEPTION_NAMES = {1: "illegal function", 2: "illegal data address", 3: "illegal data value",
                   4: "device failure", 5: "acknowledge", 6: "device busy",
                   8: "memory parity error", 10: "gateway path unavailable",
                   11: "gateway target failed to respond"}


def inter_frame_silence(bus: ModbusBusConfig) -> float:
    """Seconds of silence the master keeps before each frame it sends.

    RTU: 3.5 character times (a character is start + 8 data + parity + stop bits: 11 bits for
    8E1), fixed at 1.75 ms above 19200 baud (Modbus over serial line V1.02, §2.5.1.1); without
    it the slaves on a shared line may read two frames as one. `gap` only lengthens it. TCP:
    `gap`, zero by default.
    """
    if not bus.is_rtu:
        return bus.gap
    bits = 1 + bus.bytesize + (bus.parity != "N") + bus.stopbits
    t35 = 0.00175 if bus.baudrate > 19200 else 3.5 * bits / bus.baudrate
    return max(t35, bus.gap)


class PortRefused(DeviceUnavailable):
    """The serial port cannot be opened with the bus settings; the message names both."""


class Refused(Exception):  # noqa: N818 - it is an answer, not a failure of ours
    """The device answered with a Modbus exception code."""

    def __init__(self, code: int) -> None:
        self.code = code
        super().__init__(f"exception {code:02d} ({EXCEPTION_NAMES.get(code, 'unknown')})")


class ModbusLink:
    """A lazily connected pymodbus client for one bus; counts requests, timeouts and garbage."""

    def __init__(self, bus: ModbusBusConfig, stats: BusStats) -> None:
        self.bus = bus
        self.stats = stats
        self._received = 0  # bytes seen since the last request went out
        self._arrived = asyncio.Event()  # set when bytes come in
        self._silence = inter_frame_silence(bus)
        self._free_at = 0.0  # loop time before which the line must stay silent
        self._late_until: float | None = None  # TCP: an unanswered request may answer until then
        if _PYMODBUS_LOGGER.level == logging.NOTSET:
            _PYMODBUS_LOGGER.setLevel(logging.CRITICAL)
        self._client = self._make_client()

    def _make_client(self) -> AsyncModbusTcpClient | AsyncModbusSerialClient:
        common = {"timeout": _CLIENT_TIMEOUT, "retries": 0, "reconnect_delay": 0,
                  "trace_packet": self._trace, "name": self.bus.id}
        if self.bus.is_rtu:
            # pyserial opens `socket://host:port` URLs too: serial-over-TCP converters and the
            # simulators then get byte-exact RTU frames, CRC included.
            return AsyncModbusSerialClient(str(self.bus.port), framer=FramerType.RTU,
                                           baudrate=self.bus.baudrate, bytesize=self.bus.bytesize,
                                           parity=self.bus.parity, stopbits=self.bus.stopbits,
                                           **common)  # type: ignore[arg-type]
        assert self.bus.host is not None and isinstance(self.bus.port, int)  # config guarantees
        return AsyncModbusTcpClient(self.bus.host, port=self.bus.port, framer=FramerType.SOCKET,
                                    **common)  # type: ignore[arg-type]

    @property
    def peer(self) -> str:
        return str(self.bus.port) if self.bus.is_rtu else f"{self.bus.host}:{self.bus.port}"

    def _trace(self, sending: bool, data: bytes) -> bytes:
        # Bytes that arrive without making a valid answer are garbage (bad CRC, wrong length,
        # wrong unit): pymodbus drops them silently and reports a timeout.
        if sending:
            self._received = 0
        else:
            self._received += len(data)
            self._arrived.set()
        return data

    async def open(self, timeout: float) -> None:
        if self._client.connected:
            return
        if self.bus.is_rtu and "://" not in str(self.bus.port):
            await asyncio.to_thread(self._check_port)
        try:
            async with asyncio.timeout(timeout):
                ok = await self._client.connect()
        except TimeoutError:
            ok = False
        except (SerialException, termios.error, OSError, ValueError) as exc:
            self._client.close()
            if not self.bus.is_rtu:
                raise DeviceUnavailable(f"cannot connect to {self.peer}: {_why(exc)}") from None
            raise PortRefused(f"cannot open serial port {self.peer}: {_why(exc)}") from None
        if not ok:
            self._client.close()
            raise DeviceUnavailable(f"cannot connect to {self.peer}")

    def _check_port(self) -> None:
        """Open the serial port as pymodbus will, then close it: a port that refuses a setting
        is reported with the port and the setting, and is never left open (and locked) behind
        a half-made connection (pymodbus keeps the port it failed to configure)."""
        problem = _try_port(self._port_settings())
        if problem is None:
            return
        if "could not open port" in problem:  # missing, or no permission
            raise PortRefused(f"cannot open serial port {self.peer}: {problem}")
        if "exclusively lock" in problem:
            raise PortRefused(f"serial port {self.peer} is in use by another program ({problem})"
                              "; only one master per line: stop it first")
        raise PortRefused(f"serial port {self.peer} refuses {self._refused_setting()} "
                          f"({problem}): the port or adapter cannot do it; use one that can, "
                          "or change the bus setting if the line allows it")

    def _port_settings(self, **change: Any) -> dict[str, Any]:
        bus = self.bus
        return {"url": str(bus.port), "baudrate": bus.baudrate, "bytesize": bus.bytesize,
                "parity": bus.parity, "stopbits": bus.stopbits, **change}

    def _refused_setting(self) -> str:
        """Which setting it is: the first one whose usual value makes the port open."""
        bus = self.bus
        for key, usual, shown in (("parity", "N", f"parity {bus.parity}"),
                                  ("stopbits", 1, f"{bus.stopbits} stop bits"),
                                  ("baudrate", 9600, f"{bus.baudrate} baud")):
            if getattr(bus, key) != usual and _try_port(self._port_settings(**{key: usual})) \
                    is None:
                return shown
        return (f"the settings {bus.baudrate} baud, {bus.bytesize}{bus.parity}{bus.stopbits}")

    def close(self) -> None:
        self._client.close()

    async def read(self, table: Table, start: int, count: int, unit: int,
                   timeout: float) -> list[int] | list[bool]:
        """Registers (as ints) or bits (as bools) from `start`; raises Refused/DeviceUnavailable."""
        client = self._client
        call = {"coils": client.read_coils, "discrete": client.read_discrete_inputs,
                "input": client.read_input_registers,
                "holding": client.read_holding_registers}[table]
        answer = await self._transact(lambda: call(start, count=count, device_id=unit), unit,
                                      timeout)
        values: list[int] | list[bool] = (answer.bits if table in ("coils", "discrete")
                                          else answer.registers)
        if len(values) < count:
            self.stats.garbage += 1
            raise DeviceUnavailable(f"unit {unit} answered {len(values)} values for {count}")
        return values[:count]  # bit answers are padded to whole bytes

    async def identify(self, unit: int, timeout: float) -> dict[int, Any]:
        """Basic device identification (FC 43 / MEI 14, read code 1): object id -> raw value;
        raises Refused when the device does not offer it."""
        answer = await self._transact(
            lambda: self._client.read_device_information(read_code=1, object_id=0,
                                                         device_id=unit), unit, timeout)
        return dict(getattr(answer, "information", {}) or {})

    async def write_coil(self, address: int, state: bool, unit: int, timeout: float) -> None:
        await self._transact(lambda: self._client.write_coil(address, state, device_id=unit),
                             unit, timeout)

    async def write_registers(self, address: int, words: Sequence[int], unit: int,
                              timeout: float) -> None:
        client = self._client
        if len(words) == 1:  # FC 06: the one every device supports
            await self._transact(lambda: client.write_register(address, words[0], device_id=unit),
                                 unit, timeout)
        else:
            await self._transact(
                lambda: client.write_registers(address, list(words), device_id=unit), unit, timeout)

    async def _transact(self, request: Callable[[], Awaitable[ModbusPDU]], unit: int,
                        timeout: float) -> ModbusPDU:
        await self._settle(timeout)
        await self._keep_gap()
        self.stats.requests += 1
        # pymodbus waits with its own per-connection timeout; set it to this device's, so a
        # silent device ends by pymodbus' own timeout and not by cancelling it from outside: on
        # Python 3.11 its asyncio.wait_for can swallow a cancellation that races with a reply.
        # The outer deadline is only a safety net.
        self._client.ctx.comm_params.timeout_connect = timeout
        try:
            async with asyncio.timeout(timeout + _SAFETY_MARGIN):
                answer = await request()
        except TimeoutError:
            raise self._no_answer(unit, f"no answer within {timeout:g}s", timeout) from None
        except ModbusIOException as exc:
            why = (f"no answer within {timeout:g}s" if "No response received" in str(exc)
                   else str(exc))
            raise self._no_answer(unit, why, timeout) from None
        except ConnectionException as exc:
            self._client.close()  # next poll reconnects from scratch
            raise self._no_answer(unit, f"connection to {self.peer} lost: {exc}", 0) from None
        finally:
            # Counted from the end of the answer (or of the wait for it), as the line sees it.
            self._free_at = asyncio.get_running_loop().time() + self._silence
        if answer.isError():
            self.stats.exceptions += 1
            raise Refused(int(getattr(answer, "exception_code", 0)))
        return answer

    def _no_answer(self, unit: int, why: str, late_for: float) -> DeviceUnavailable:
        received, self._received = self._received, 0
        if late_for and not self.bus.is_rtu:
            self._late_until = asyncio.get_running_loop().time() + late_for
        if received:
            self.stats.garbage += 1
            return DeviceUnavailable(f"unit {unit} on {self.peer}: {received} bytes that "
                                     f"are no valid answer (check baud rate, parity, wiring)")
        self.stats.timeouts += 1
        return DeviceUnavailable(f"unit {unit} on {self.peer}: {why}")

    async def _settle(self, timeout: float) -> None:
        """TCP, after a request went unanswered: its answer may still be on its way (libmodbus
        answers an unknown function after 0.5 s, and drops what came meanwhile). Wait for it,
        up to as long again as the request waited; pymodbus drops it as unsolicited. If it does
        not come, reconnect: a fresh connection carries no stale answer, so one unit's late
        answer never costs the next unit its own."""
        if self._late_until is None:
            return
        until, self._late_until = self._late_until, None
        loop = asyncio.get_running_loop()
        if not self._received and until > loop.time():
            self._arrived.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout_at(until):
                    await self._arrived.wait()
        if self._received:
            self._received = 0
            await asyncio.sleep(0)  # let pymodbus take the late frame before the next request
            return
        self._client.close()
        await self.open(timeout)

    async def _keep_gap(self) -> None:
        delay = self._free_at - asyncio.get_running_loop().time()
        if delay > 0:
            await asyncio.sleep(delay)


def _try_port(settings: dict[str, Any]) -> str | None:
    """None when the port opens and keeps `settings`, else why not. Always leaves it closed."""
    port = None
    try:
        port = serial_for_url(**settings, exclusive=True, do_not_open=True)
        port.open()
        port.timeout = 0  # pymodbus sets this too; it applies the settings a second time
        wanted = termios.PARENB if settings["parity"] != "N" else 0
        if termios.tcgetattr(port.fileno())[2] & termios.PARENB != wanted:
            return "the port dropped the parity setting"
    except (SerialException, termios.error, OSError, ValueError) as exc:
        return _why(exc)
    finally:
        if port is not None:
            port.close()
    return None


def _why(exc: BaseException) -> str:
    if isinstance(exc, termios.error) and len(exc.args) == 2:
        return f"termios: {exc.args[1]} (errno {exc.args[0]})"
    return str(exc) or type(exc).__name__
