"""`batigate wmbus ...`: decode one radio telegram, import the per-meter keys of a delivery.

    batigate wmbus decode 1844AE4C4455223368077A55000000041389E20100023B0000 --json
    batigate wmbus keys import delivery.csv --keys /etc/batigate/wmbus.keys

Keys never reach stdout, stderr or logs; `--key` is read from the command line only because the
technician typed it there (prefer `--keys FILE`).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from agent.cli.common import EXIT_CONFIG, EXIT_FAILURE, EXIT_OK
from agent.i18n import t

DEFAULT_KEYS = Path("/etc/batigate/wmbus.keys")
MAX_INPUT = 64 * 1024  # one telegram as hex is < 1 KiB; refuse to read a large file


@click.group("wmbus")
def wmbus_group() -> None:
    """Wireless M-Bus / OMS radio meters: decode a telegram, import meter keys."""


def _read_hex(source: str) -> bytes:
    path = Path(source)
    text = source
    try:
        is_file = path.is_file()
    except OSError:  # a long hex string is no file name the system accepts
        is_file = False
    if not all(ch in "0123456789abcdefABCDEF \t\n" for ch in source) or is_file:
        try:
            with path.open("rb") as handle:
                text = handle.read(MAX_INPUT + 1).decode("ascii", errors="replace")
        except OSError as exc:
            raise click.ClickException(t("wmbus.source_error", source=source,
                                         error=exc.strerror or exc)) from None
        if len(text) > MAX_INPUT:
            raise click.ClickException(t("wmbus.too_large", source=source, size=MAX_INPUT))
    compact = "".join(text.split())
    try:
        return bytes.fromhex(compact)
    except ValueError:
        raise click.ClickException(t("wmbus.not_hex", source=source[:40])) from None


@wmbus_group.command("decode")
@click.argument("telegram")
@click.option("--key", "key_hex", help="the meter's AES-128 key, 32 hex digits")
@click.option("--keys", "keys_path", type=click.Path(path_type=Path),
              help="a keys file (mode 0600) to look the meter's key up in")
@click.option("--format", "frame_format", type=click.Choice(["auto", "stripped", "a", "b"]),
              default="auto", show_default=True,
              help="link-layer CRCs: formats A/B with CRCs, or stripped as sticks deliver")
@click.option("--plaintext", is_flag=True,
              help="the telegram was stored after decryption (logs): accept it without a key")
@click.option("--json", "as_json", is_flag=True, help="one JSON document on stdout")
def wmbus_decode(telegram: str, key_hex: str | None, keys_path: Path | None, frame_format: str,
                 plaintext: bool, as_json: bool) -> None:
    """Decode one telegram given as HEX or a FILE holding the hex (from the L field on).

    \b
    Examples:
      batigate wmbus decode 1844AE4C4455223368077A55000000041389E20100023B0000 --json
      batigate wmbus decode telegram.hex --keys /etc/batigate/wmbus.keys
    Exit codes: 0 decoded, 1 malformed or undecryptable (one line says why), 2 usage.
    """
    from drivers.wmbus import KeyFileError, KeyStore, TelegramError  # noqa: PLC0415
    from drivers.wmbus.telegram import decode_telegram, telegram_to_json  # noqa: PLC0415

    try:
        keys = None
        if key_hex is not None and keys_path is not None:
            raise KeyFileError(t("wmbus.key_and_keys"))
        if key_hex is not None:
            from drivers.wmbus.keys import parse_key  # noqa: PLC0415

            keys = KeyStore.single(parse_key(key_hex))
        elif keys_path is not None:
            keys = KeyStore.load(keys_path)
    except KeyFileError as exc:
        click.echo(t("error", message=exc), err=True)
        sys.exit(EXIT_CONFIG)
    frame = _read_hex(telegram)
    try:
        decoded = decode_telegram(frame, keys, frame_format=frame_format,
                                  stored_plaintext=plaintext)
    except TelegramError as exc:
        who = t("wmbus.who", id=exc.header.id, manufacturer=exc.header.manufacturer) \
            if exc.header else ""
        click.echo(f"{exc.reason}: {who}{exc}", err=True)
        sys.exit(EXIT_FAILURE)
    if as_json:
        click.echo(json.dumps(telegram_to_json(decoded), ensure_ascii=False))
    else:
        _render(decoded)
    sys.exit(EXIT_OK)


def _render(tg) -> None:  # tg: drivers.wmbus.Telegram
    from rich.console import Console  # noqa: PLC0415
    from rich.markup import escape  # noqa: PLC0415
    from rich.table import Table  # noqa: PLC0415

    console = Console(width=max(Console().width, 110))
    enc = tg.encryption
    state = t("none") if not (enc.mode or enc.ell) else t(
        "wmbus.encryption", mode=enc.mode, ell=" + ELL AES-CTR" if enc.ell else "",
        how=t("wmbus.decrypted" if enc.decrypted else "wmbus.stored_plaintext"))
    console.print(t("wmbus.header", id=tg.id, manufacturer=tg.manufacturer, version=tg.version,
                    medium=tg.medium, access=tg.access_number,
                    status=f"0x{(tg.status or 0):02X}", encryption=state), highlight=False)
    if tg.meter_time:
        console.print(t("wmbus.meter_time", time=tg.meter_time.isoformat()), highlight=False)
    table = Table()
    for col in ("#", "quantity", "value", "unit", "function", "storage", "tariff", "subunit"):
        table.add_column("#" if col == "#" else t(f"wmbus.col.{col}"),
                         justify="right" if col in ("#", "value") else "left", overflow="fold")
    for i, r in enumerate(tg.records):
        value = "-" if r.value is None else (f"{r.value:.10g}" if isinstance(r.value, float)
                                             else str(r.value))
        cells = (r.quantity, value, r.unit or "", r.function)
        table.add_row(str(i), *map(escape, cells), str(r.storage), str(r.tariff), str(r.subunit))
    console.print(table)
    if tg.manufacturer_data:
        console.print(t("wmbus.manufacturer_data", size=len(tg.manufacturer_data),
                        data=tg.manufacturer_data.hex().upper()), highlight=False)


@wmbus_group.group("keys")
def keys_group() -> None:
    """The per-meter AES keys file (mode 0600)."""


@keys_group.command("import")
@click.argument("csv_file", type=click.Path(path_type=Path))
@click.option("--keys", "keys_path", type=click.Path(path_type=Path), default=DEFAULT_KEYS,
              show_default=True, help="the keys file to add to (created 0600)")
def keys_import(csv_file: Path, keys_path: Path) -> None:
    """Add the keys of a manufacturer's delivery CSV (id/serial and key columns, ';' or ',').

    \b
    Example:  batigate wmbus keys import kamstrup-order-4711.csv
    The keys are never printed; the summary says how many were added and which lines were not.
    """
    from drivers.wmbus.keys import KeyFileError, KeyStore, import_csv  # noqa: PLC0415

    try:
        store = KeyStore.load(keys_path) if keys_path.exists() else KeyStore(keys_path)
        before = len(store)
        try:
            text = csv_file.read_text(encoding="utf-8-sig", errors="replace")
        except OSError as exc:
            raise KeyFileError(t("wmbus.source_error", source=csv_file,
                                 error=exc.strerror or exc)) from None
        added, problems = import_csv(text, store, str(csv_file))
        for line in problems:
            click.echo(line, err=True)
        if added:
            store.save(keys_path)
    except (KeyFileError, OSError) as exc:
        click.echo(t("error", message=exc), err=True)
        sys.exit(EXIT_CONFIG)
    click.echo(t("wmbus.imported", added=added, csv=csv_file, new=len(store) - before,
                 total=len(store), keys=keys_path, refused=len(problems)))
    sys.exit(EXIT_FAILURE if problems or not added else EXIT_OK)
