"""`batigate sim`: the whole simulated building (Modbus TCP + M-Bus over TCP) until Ctrl-C."""

from __future__ import annotations

import asyncio
import signal
import sys
from typing import Any

import click


def _scenarios() -> str:
    from agent.sim.scenario import installed  # noqa: PLC0415

    return ", ".join(installed())


class _SimCommand(click.Command):
    # The scenario list is read from the installed files when help is shown, not at import.
    def format_help_text(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        super().format_help_text(ctx, formatter)
        with formatter.indentation():
            formatter.write_paragraph()
            formatter.write_text(f"Scenarios: {_scenarios()}.")


@click.command("sim", cls=_SimCommand)
@click.option("--scenario", help="play this scenario once, then keep the building running")
@click.option("--speed", type=click.FloatRange(min=0.01), default=1.0, show_default=True,
              help="the building (physics and scenario) runs this many times faster")
@click.option("--modbus-port", "--port", "modbus_port", default=5020, show_default=True,
              help="Modbus TCP port (0: any free)")
@click.option("--mbus-port", default=2400, show_default=True, help="M-Bus TCP port (0: any free)")
@click.option("--im871a-port", default=8710, show_default=True,
              help="emulated iM871A radio stick, TCP port (0: any free)")
@click.option("--amber-port", default=8465, show_default=True,
              help="emulated Amber AMB8465 radio stick, TCP port (0: any free)")
@click.option("--keys", "keys_path", type=click.Path(dir_okay=False),
              help="write the radio meters' AES keys here (mode 0600), for the gateway's "
                   "`keys:`")
@click.option("--host", default="127.0.0.1", show_default=True)
def sim(scenario: str | None, speed: float, modbus_port: int, mbus_port: int, im871a_port: int,
        amber_port: int, keys_path: str | None, host: str) -> None:
    """Serve the simulated building until Ctrl-C: VMCs, relevage pump, lift, door contacts on
    Modbus TCP; water and heat meters on M-Bus over TCP; the flats' radio meters (wireless
    M-Bus, encrypted) through an emulated iM871A and an emulated Amber stick on TCP.

    \b
    Examples:
      batigate sim
      batigate sim --scenario water-leak-night --speed 60
    """
    from agent.sim import building  # noqa: PLC0415
    from agent.sim.scenario import installed  # noqa: PLC0415

    if scenario is not None and scenario not in installed():
        click.echo(f"unknown scenario {scenario!r}; installed: {_scenarios()}", err=True)
        sys.exit(2)

    def ready(started: Any) -> None:
        modbus, mbus = started.ports
        if keys_path:
            from pathlib import Path  # noqa: PLC0415

            from agent.sim.radio_meters import keys_file  # noqa: PLC0415

            keys_file(started.radio_meters, Path(keys_path))
        click.echo(f"simulated building: modbus-tcp {host}:{modbus} (units 1 VMC, 2 pump, "
                   f"3 spare VMC, 4 lift, 5 door contacts), mbus socket://{host}:{mbus} "
                   f"(meters 1-5, heat 10-12), radio: im871a socket://{host}:"
                   f"{started.radio_ports['im871a']}, amb8465 socket://{host}:"
                   f"{started.radio_ports['amber']}"
                   + (f" (keys in {keys_path})" if keys_path else " (--keys FILE writes their keys)")
                   + (f"; playing {scenario} at x{speed:g}" if scenario else "") + "; Ctrl-C stops")

    async def serve() -> None:
        task = asyncio.ensure_future(building.serve(modbus_port, mbus_port, host=host,
                                                    scenario=scenario, speed=speed, ready=ready,
                                                    radio_ports=(im871a_port, amber_port)))
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, task.cancel)
        try:
            await task
        except asyncio.CancelledError:
            pass

    asyncio.run(serve())
