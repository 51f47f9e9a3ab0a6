"""French and English: the same messages in both, every message the code asks for exists, and
the language follows `--lang` and the locale."""

from __future__ import annotations

import ast
import re
import string
import subprocess
import sys
from pathlib import Path

import pytest

from agent.cli import buffer as cli_buffer

from agent.cli import selftest as cli_selftest
from agent.remote import render
from agent.display import dashboard
from agent.i18n import CATALOGS, detect, en, fr, parse, t

ROOT = Path(__file__).resolve().parents[2]
# Keys the code builds from a value (t("severity." + severity)): each family and its members.
DYNAMIC = {
    "severity.": dashboard.SEVERITY_ORDER,
    "state.": ("ok", "down", "unknown"),
    "quality.": ("good", "uncertain", "bad"),
    "selftest.": ("ok", "warn", "fail"),
    "selftest.col.": ("check", "result", "detail", "fix"),
    "selftest.fix.broker.": ("connect", "tls-server", "tls-client", "mqtt"),
    "read.col.": ("point", "value", "unit", "quality", "why"),
    "status.col.": ("device", "bus", "state", "last", "polls", "failures", "error", "alarm",
                    "severity", "since"),
    "buffer.stat.": cli_buffer.STAT_LABELS,
    "selftest.name.": cli_selftest.CHECK_NAMES,
    "scan.modbus.col.": ("unit", "vendor", "product", "revision"),
    "scan.mbus.col.": ("how", "primary", "id", "manufacturer", "version", "medium"),
    "scan.mbus.how.": ("primary", "secondary"),
    "scan.mbus.phase.": ("primary", "secondary"),
    "scan.mbus.at.": ("primary", "secondary"),
    "scan.wmbus.col.": ("id", "manufacturer", "medium", "version", "encrypted", "key", "rssi",
                        "count", "last", "device"),
    "scan.wmbus.key.": ("yes", "no", "wrong"),
    "value.": ("true", "false"),
    "wmbus.col.": ("quantity", "value", "unit", "function", "storage", "tariff", "subunit"),
    "meters.col.": ("dwelling", "meter", "medium", "start", "end", "consumption"),
    "meters.how.": ("meter", "reading", "interpolated", "missing"),
    "remote.col.": {*render.RESULT_COLUMNS, *render.FLEET_COLUMNS, *render.ALARM_COLUMNS},
}


def _fields(text: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(text) if name is not None}


def test_french_has_every_english_message_and_no_other() -> None:
    assert set(fr.MESSAGES) == set(en.MESSAGES)


@pytest.mark.parametrize("key", sorted(en.MESSAGES))
def test_each_message_has_the_same_placeholders_in_both(key: str) -> None:
    assert en.MESSAGES[key].strip() and fr.MESSAGES[key].strip()
    assert _fields(en.MESSAGES[key]) == _fields(fr.MESSAGES[key]), key


def test_french_is_translated_not_copied() -> None:
    # Some messages are the same in both (`ok`, `info`, commands, `{dev} (via {via})`); most
    # must not be: a copied catalog would pass the key check above.
    same = [k for k in en.MESSAGES if en.MESSAGES[k] == fr.MESSAGES[k]]
    assert len(same) < len(en.MESSAGES) / 8, same


def _used_keys() -> set[str]:
    keys: set[str] = set()
    # t("key") and t(f"family.{member}"): an f-string counts by its literal head, a family
    pattern = re.compile(r"""\bt\(\s*(f?)["']([a-z0-9_.-]+)(["'{])""")
    for path in SOURCES:
        for is_f, key, end in pattern.findall(path.read_text(encoding="utf-8")):
            if not is_f or (end == "{" and key.endswith(".")):
                keys.add(key)
    return keys


# drivers/ too: a driver's scan and wizard questions speak through the catalog.
SOURCES = [*ROOT.glob("agent/**/*.py"), *ROOT.glob("rules/**/*.py"),
           *ROOT.glob("provisioning/**/*.py"), *ROOT.glob("drivers/**/*.py")]


def test_every_message_the_code_uses_is_in_the_catalog() -> None:
    used = _used_keys()
    assert len(used) > 80  # the scan finds the calls (a broken regex would find none)
    prefixes = {key for key in used if key.endswith(".")}  # t("severity." + severity)
    assert prefixes <= set(DYNAMIC), prefixes - set(DYNAMIC)  # each family is listed above
    used -= prefixes
    for prefix, members in DYNAMIC.items():
        used |= {prefix + member for member in members}
    missing = sorted(used - set(en.MESSAGES))
    assert not missing, missing


def test_no_message_is_left_unused() -> None:
    # Any literal naming a key counts (`t("value.true" if value else "value.false")`).
    literal = re.compile(r"""["']([a-z][a-z0-9_.-]*)["']""")
    used = {key for path in SOURCES if "i18n" not in path.parts
            for key in literal.findall(path.read_text(encoding="utf-8"))}
    for prefix, members in DYNAMIC.items():
        used |= {prefix + member for member in members}
    assert not sorted(set(en.MESSAGES) - used)


@pytest.mark.parametrize(("env", "lang"), [
    ({"LANG": "fr_FR.UTF-8"}, "fr"),
    ({"LANG": "fr_FR.UTF-8", "LC_ALL": "C"}, "en"),  # LC_ALL wins over LANG
    ({"LANG": "C", "LC_MESSAGES": "fr_BE.UTF-8"}, "fr"),  # LC_MESSAGES over LANG
    ({"LC_ALL": "fr_CA.UTF-8", "BATIGATE_LANG": "en"}, "en"),
    ({"LANG": "de_DE.UTF-8"}, "en"),  # no German: English
    ({}, "en"),
])
def test_language_from_the_environment(env: dict[str, str], lang: str) -> None:
    assert detect(env) == lang


def test_parse_and_fill() -> None:
    assert parse("FR-be") == "fr" and parse("POSIX") == "en"
    assert t("dash.alarms", "fr", count=2) == "2 alarme(s) active(s)"
    assert set(CATALOGS) == {"en", "fr"}
    # placeholders named like t()'s own parameters (positional-only) are values like the others
    assert t("selftest.fix.key_mode", "fr", key="/etc/gw.key") == "chmod 600 /etc/gw.key"
    assert t("release.verified", "en", bundle="b", version="1", wheels=2, key="ab12").endswith(
        "signature by ab12)")


def _cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "agent", *args], capture_output=True, text=True,
                          timeout=30, check=False, env={"PATH": "/usr/bin:/bin", **env},
                          cwd=ROOT)


def test_cli_speaks_french_from_the_locale_and_from_lang(tmp_path: Path) -> None:
    missing = tmp_path / "none.yaml"
    french = _cli("config", "check", str(missing), env={"LANG": "fr_FR.UTF-8"})
    assert french.returncode == 2 and "1 problème(s)" in french.stderr
    english = _cli("config", "check", str(missing), env={"LANG": "C.UTF-8"})
    assert "1 problem(s)" in english.stderr
    forced = _cli("--lang", "fr", "read", "vmc", "--config", str(missing),
                  env={"LANG": "C.UTF-8"})
    assert "1 problème(s) dans" in forced.stderr


# -- no English sentence left in what a technician reads ------------------------------------------

# The technician's commands, then the operations team's (remote, release).
TECHNICIAN_MODULES = ("cli/main.py", "cli/common.py", "cli/init.py", "cli/scan.py", "cli/wmbus.py",
                      "cli/meters.py", "cli/selftest.py", "cli/local.py", "cli/buffer.py",
                      "cli/provision.py", "sim/demo.py", "cli/remote.py", "cli/remote_ops.py",
                      "cli/release.py", "remote/render.py", "sdk/capabilities.py",
                      "sdk/writes.py",
                      # the drivers' scans (their tables reach the technician through scan)
                      "../drivers/modbus/scan.py", "../drivers/mbus/scan.py",
                      "../drivers/wmbus/scan.py")
# Calls whose text reaches a person; for Check, only its detail and fix (its name and result are
# ids kept in --json, shown through t() by the table).
OUTPUT_CALLS = {"echo": None, "secho": None, "print": None, "prompt": None, "confirm": None,
                "fail": None, "BadParameter": None, "ClickException": None, "UsageError": None,
                "KeyFileError": None, "Table": None, "add_column": None, "add_task": None,
                "add_row": None, "status": None, "Check": (2, 3)}
WORD = re.compile(r"[A-Za-z]{3,}")
MARKUP = re.compile(r"\[/?[a-z #0-9]*\]")  # rich markup: [dim], [/], [bold red]
# Literals that are no sentence: the command's name as a table title, the raw SenML stream of
# `demo --log` (field names and rich markup pieces).
ALLOWED = {"selftest", "[/] seq=", "[bold ", "type"}


def _literals(node: ast.AST):  # type: ignore[no-untyped-def]
    """String literals inside an argument, not inside another call (t(...) is one), nor in a
    subscript (`row["medium"]`) or a comparison (`driver == "modbus-rtu"`): those are no text."""
    if isinstance(node, ast.Call | ast.Lambda | ast.Compare):
        return
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        yield node
    if isinstance(node, ast.Subscript):
        yield from _literals(node.value)
        return
    for child in ast.iter_child_nodes(node):
        yield from _literals(child)


def _untranslated(source: str) -> list[tuple[int, str]]:
    found = []
    for call in ast.walk(ast.parse(source)):
        if not isinstance(call, ast.Call):
            continue
        func = call.func
        name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
        if name not in OUTPUT_CALLS:
            continue
        positions = OUTPUT_CALLS[name]
        args = [a for i, a in enumerate(call.args) if positions is None or i in positions]
        args += [k.value for k in call.keywords if k.arg in ("title", "caption", "text")]
        for arg in args:
            for literal in _literals(arg):
                if literal.value not in ALLOWED and WORD.search(MARKUP.sub("", literal.value)):
                    found.append((literal.lineno, literal.value))
    return found


def test_the_scan_finds_english_literals() -> None:
    # The detector itself: each of these is a message left in English.
    source = '''
click.echo("written to the config")
fail(f"no outbox at {path}", 1)
raise click.BadParameter("a TCP port number " + "1..65535")
table = Table(title=f"{n} meter(s) on {bus}")
Check("disk", "warn", "low space", "free some")
click.echo(t("scan.added", devices=x) if x else "nothing new")
'''
    assert [line for line, _ in _untranslated(source)] == [2, 3, 4, 5, 6, 6, 7]
    clean = '''
click.echo(t("scan.added", devices=", ".join(added)))
console.print(f"[dim]{t('demo.page', url=page)}[/]")
Check("config", "ok", t("selftest.detail.config", path=p, buses=1, devices=2))
table.add_row(row["medium"] or "—", "?" if x is None else t("value.true"))
click.prompt(t("init.ask.driver"), type=click.Choice(DRIVERS), default="E", err=True)
'''
    assert _untranslated(clean) == []


@pytest.mark.parametrize("module", TECHNICIAN_MODULES)
def test_technician_output_goes_through_the_catalog(module: str) -> None:
    path = ROOT / "agent" / module
    left = _untranslated(path.read_text(encoding="utf-8"))
    assert not left, [f"{module}:{line}: {text!r}" for line, text in left]
