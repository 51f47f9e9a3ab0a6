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
@click.option("--host", default="127.0.0.1", show_default=True)
def sim(scenario: str | None, speed: float, modbus_port: int, mbus_port: int, host: str) -> None:
    """Serve the simulated building until Ctrl-C: VMCs, relevage pump, lift, door contacts on
    Modbus TCP; water and heat meters on M-Bus over TCP.

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
        click.echo(f"simulated building: modbus-tcp {host}:{modbus} (units 1 VMC, 2 pump, "
                   f"3 spare VMC, 4 lift, 5 door contacts), mbus socket://{host}:{mbus} "
                   f"(meters 1-5, heat 10-12)"
                   + (f"; playing {scenario} at x{speed:g}" if scenario else "") + "; Ctrl-C stops")

    async def serve() -> None:
        task = asyncio.ensure_future(building.serve(modbus_port, mbus_port, host=host,
                                                    scenario=scenario, speed=speed, ready=ready))
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, task.cancel)
        try:
            await task
        except asyncio.CancelledError:
            pass

    asyncio.run(serve())
