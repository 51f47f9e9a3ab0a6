"""`batigate init`: write a first valid config, by questions or by flags.

Every answer is checked when it is given (the same models as `config check`), so a wrong id or
port is asked again at once instead of failing at the end; the whole file is validated before it
is written.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import click

from agent.cli.common import DEFAULT_CONFIG, EXIT_CONFIG, emit_json, fail, json_option
from agent.i18n import t
from agent.sdk import capabilities

IDENT = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
HEADER = ("# batigate gateway config, written by `batigate init`.\n"
          "# Check it with `batigate config check FILE`; reference: README.md (Config).\n")


def ident(value: str) -> str:
    value = value.strip()
    if not IDENT.match(value):
        raise click.BadParameter(t("init.bad_ident"))
    return value


def _refusing(check: Any) -> Any:
    """A check of `agent.sdk.capabilities` (ValueError) as a click one (BadParameter)."""
    def checked(value: Any) -> Any:
        try:
            return check(value)
        except ValueError as exc:
            raise click.BadParameter(str(exc)) from None
    return checked


host = _refusing(capabilities.host)
port = _refusing(capabilities.tcp_port)


def parse_bus(spec: str) -> dict[str, Any]:
    """`ID:DRIVER:key=value,...`, e.g. `lan:modbus-tcp:host=192.0.2.10,port=502`."""
    parts = spec.split(":", 2)
    if len(parts) < 2:
        raise click.BadParameter(t("init.bad_bus_spec", spec=spec))
    bus: dict[str, Any] = {"id": ident(parts[0]), "driver": parts[1]}
    if len(parts) == 3 and parts[2]:
        for item in parts[2].split(","):
            key, sep, value = item.partition("=")
            if not sep:
                raise click.BadParameter(t("init.bad_bus_item", item=item))
            bus[key.strip()] = int(value) if value.strip().isdigit() else value.strip()
    return check_bus(bus)


def check_bus(bus: dict[str, Any]) -> dict[str, Any]:
    """Validate one bus with its driver's model; BadParameter with the driver's words."""
    from pydantic import ValidationError  # noqa: PLC0415

    from agent.sdk import registry  # noqa: PLC0415

    try:
        driver = registry.load(registry.DRIVERS, str(bus.get("driver")))
    except KeyError as exc:
        raise click.BadParameter(str(exc.args[0])) from None
    try:
        driver.bus_model.model_validate(bus)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'bus'}: "
                             f"{str(e['msg']).removeprefix('Value error, ')}"
                             for e in exc.errors())
        raise click.BadParameter(problems) from None
    return bus


def _ask(label: str, check: Any, default: Any = None, *, show_default: bool = True) -> Any:
    """Ask until `check` accepts the answer (our loop, not click's value_proc: click would
    frame the refusal in English)."""
    while True:
        # type str: with an int default click would check the type itself, in English
        answer = click.prompt(label, default=default, type=click.STRING, err=True,
                              show_default=show_default and default != "")
        try:
            return check(answer)
        except click.BadParameter as exc:
            click.echo(t("init.refused", error=exc.message), err=True)


def _choice(options: tuple[str, ...]) -> Any:
    def check(value: str) -> str:
        if str(value).strip() not in options:
            raise click.BadParameter(t("init.choose", options=", ".join(options)))
        return str(value).strip()
    return check


def _confirm(label: str, default: bool) -> bool:
    """Yes or no, in English or French (y, yes, o, oui / n, no, non)."""
    def check(value: str) -> bool:
        answer = str(value).strip().lower()
        if answer in ("y", "yes", "o", "oui"):
            return True
        if answer in ("n", "no", "non"):
            return False
        raise click.BadParameter(t("init.yes_no"))
    hint = t("init.yes_default" if default else "init.no_default")
    return bool(_ask(f"{label} {hint}", check, "y" if default else "n", show_default=False))


def offered() -> dict[str, tuple[capabilities.Question, ...]]:
    """The drivers the wizard offers (those that declare what a bus of theirs needs) with their
    questions; a third-party driver's appear here like ours."""
    from agent.sdk import registry  # noqa: PLC0415

    return {name: caps.questions for name, caps in registry.drivers().items() if caps.questions}


def _ask_bus(existing: set[str]) -> dict[str, Any]:
    drivers = offered()
    names = tuple(drivers)
    while True:
        bus_id = _ask(t("init.ask.bus_id"), ident)
        if bus_id in existing:
            click.echo(t("init.bus_exists", bus=bus_id), err=True)
            continue
        driver = _ask(f"{t('init.ask.driver')} ({', '.join(names)})", _choice(names))
        bus: dict[str, Any] = {"id": bus_id, "driver": driver}
        for question in drivers[driver]:
            bus[question.key] = _answer(question)
        try:
            return check_bus(bus)
        except click.BadParameter as exc:
            click.echo(t("init.bus_again", error=exc.message), err=True)


def _answer(question: capabilities.Question) -> Any:
    label = capabilities.say(question.label)
    if question.choices:
        return _ask(f"{label} ({', '.join(question.choices)})", _choice(question.choices),
                    question.default)
    check = _refusing(question.check or capabilities.text)
    return _ask(label, check, question.default)


@click.command("init")
@click.option("--gateway-id", help="gateway id = MQTT client id = certificate CN (gw-0042)")
@click.option("--site", help="site id (res-les-pins)")
@click.option("--broker", "broker_host", help="broker host name or address")
@click.option("--port", "broker_port", type=int, help="broker port (8883)")
@click.option("--ca", type=click.Path(path_type=Path), help="CA of the broker (/etc/batigate/ca.pem)")
@click.option("--cert", type=click.Path(path_type=Path), help="this gateway's certificate")
@click.option("--key", type=click.Path(path_type=Path), help="this gateway's private key")
@click.option("--no-tls", is_flag=True, help="plain MQTT (lab brokers only)")
@click.option("--bus", "buses", multiple=True,
              help="ID:DRIVER:key=value,... (repeat), e.g. lan:modbus-tcp:host=192.0.2.10")
@click.option("--command-key", type=click.Path(path_type=Path),
              help="the operations team's Ed25519 command public key (PEM or base64); without "
                   "it, remote commands are limited to the harmless ones")
@click.option("--allow-unsigned-commands", is_flag=True,
              help="labs only: any command runs unsigned (commands.unsigned: allow)")
@click.option("--buffer", "buffer_path", type=click.Path(path_type=Path),
              help="outbox file (/var/lib/batigate/outbox.db)")
@click.option("--socket", "socket_path", type=click.Path(path_type=Path),
              help="control socket (/run/batigate/control.sock)")
@click.option("--output", "-o", type=click.Path(path_type=Path), default=DEFAULT_CONFIG,
              show_default=True)
@click.option("--force", is_flag=True, help="overwrite an existing file")
@click.option("--no-input", is_flag=True, help="never ask: every required answer is a flag")
@json_option
def init(gateway_id: str | None, site: str | None, broker_host: str | None,
         broker_port: int | None, ca: Path | None, cert: Path | None, key: Path | None,
         no_tls: bool, buses: tuple[str, ...], command_key: Path | None,
         allow_unsigned_commands: bool, buffer_path: Path | None,
         socket_path: Path | None, output: Path, force: bool, no_input: bool,
         as_json: bool) -> None:
    """Write a first config: gateway id, site, broker, certificate paths, the operations team's
    command key, buses.

    Asks for what the flags do not give (and refuses invalid answers at the prompt). Devices
    come next, with `batigate scan ... --add` or by hand.

    \b
    Examples:
      batigate init
      batigate init --no-input --gateway-id gw-0042 --site res-les-pins \\
          --broker broker.example.org --bus rs485-1:modbus-rtu:port=/dev/ttyUSB0,baudrate=9600 \\
          --bus meters:mbus:port=/dev/ttyUSB1 -o /etc/batigate/gateway.yaml
    """
    if output.exists() and not force:
        fail(t("init.exists", output=output), EXIT_CONFIG, as_json=as_json)
    interactive = not no_input

    def need(value: Any, flag: str, label: str, check: Any, default: Any = None) -> Any:
        if value is not None:
            try:
                return check(value)
            except click.BadParameter as exc:
                fail(t("init.bad_flag", flag=flag, error=exc.message), EXIT_CONFIG,
                     as_json=as_json)
        if not interactive:
            if default is not None:
                return check(default)
            fail(t("init.required", flag=flag), EXIT_CONFIG, as_json=as_json)
        return _ask(label, check, default)

    gw = need(gateway_id, "--gateway-id", t("init.ask.gateway_id"), ident)
    site_id = need(site, "--site", t("init.ask.site"), ident)
    mqtt: dict[str, Any] = {"host": need(broker_host, "--broker", t("init.ask.broker"), host)}
    mqtt["port"] = need(broker_port, "--port", t("init.ask.broker_port"), port,
                        1883 if no_tls else 8883)
    if no_tls:
        mqtt["tls"] = False
    else:
        mqtt["tls"] = {
            "ca": str(need(ca, "--ca", t("init.ask.ca"), Path, "/etc/batigate/ca.pem")),
            "cert": str(need(cert, "--cert", t("init.ask.cert"), Path, "/etc/batigate/gw.crt")),
            "key": str(need(key, "--key", t("init.ask.key"), Path, "/etc/batigate/gw.key")),
        }
    commands = _commands(command_key, allow_unsigned_commands, interactive, as_json)
    bus_list: list[dict[str, Any]] = []
    for spec in buses:
        try:
            bus_list.append(parse_bus(spec))
        except click.BadParameter as exc:
            fail(t("init.bad_flag", flag=f"--bus {spec}", error=exc.message), EXIT_CONFIG,
                 as_json=as_json)
    if interactive and not buses:
        while _confirm(t("init.ask.add_bus"), default=not bus_list):
            bus_list.append(_ask_bus({b["id"] for b in bus_list}))
    doc: dict[str, Any] = {"gateway": {"id": gw, "site": site_id}, "mqtt": mqtt,
                           "buffer": {"path": str(buffer_path or "/var/lib/batigate/outbox.db")}}
    if socket_path is not None:
        doc["control"] = {"socket": str(socket_path)}
    if commands:
        doc["commands"] = commands
    doc["buses"] = bus_list
    doc["devices"] = []
    text = write_config(doc, output, as_json)
    if as_json:
        emit_json({"ok": True, "file": str(output), "config": doc})
    else:
        click.echo(text, nl=False)
        click.echo(t("init.written", output=output), err=True)
        if not commands:
            click.echo(t("init.no_command_key"), err=True)


def command_key(value: str | Path) -> str:
    """A readable Ed25519 public key file, or '' for none."""
    from agent.commands import signing  # noqa: PLC0415

    text = str(value).strip()
    if not text:
        return ""
    try:
        signing.load_public_key(Path(text))
    except (OSError, ValueError) as exc:
        raise click.BadParameter(t("init.bad_command_key", path=text, error=exc)) from None
    return str(Path(text).absolute())


def _commands(key: Path | None, allow_unsigned: bool, interactive: bool,
              as_json: bool) -> dict[str, Any]:
    """The `commands:` section: the operations team's key (asked by default), or a lab's
    `unsigned: allow`, or nothing (the secure default: harmless commands only)."""
    if key is not None and allow_unsigned:
        fail(t("init.key_and_unsigned"), EXIT_CONFIG, as_json=as_json)
    if allow_unsigned:
        return {"unsigned": "allow"}
    if key is not None:
        try:
            return {"public_key": command_key(key)}
        except click.BadParameter as exc:
            fail(t("init.bad_flag", flag="--command-key", error=exc.message), EXIT_CONFIG,
                 as_json=as_json)
    if not interactive:
        return {}
    chosen = _ask(t("init.ask.command_key"), command_key, "")
    return {"public_key": chosen} if chosen else {}


def write_config(doc: dict[str, Any], output: Path, as_json: bool) -> str:
    import yaml  # noqa: PLC0415

    from agent.config import loader as config_mod  # noqa: PLC0415
    from agent.sdk.errors import ConfigError  # noqa: PLC0415

    text = HEADER + yaml.safe_dump(doc, sort_keys=False, default_flow_style=None)
    try:
        config_mod.parse(text, str(output))
    except ConfigError as exc:
        fail(t("init.invalid", problems="; ".join(exc.problems)), EXIT_CONFIG, as_json=as_json)
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = output.with_name(f".{output.name}.tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o640)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(text)
    tmp.replace(output)
    return text
