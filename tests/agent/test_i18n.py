"""French and English: the same messages in both, every message the code asks for exists, and
the language follows `--lang` and the locale."""

from __future__ import annotations

import re
import string
import subprocess
import sys
from pathlib import Path

import pytest

from agent import cli_buffer
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
    pattern = re.compile(r"""\bt\(\s*(f?)["']([a-z0-9_.-]+)["']""")
    for path in [*ROOT.glob("agent/**/*.py"), *ROOT.glob("rules/**/*.py")]:
        for is_f, key in pattern.findall(path.read_text(encoding="utf-8")):
            if not is_f:
                keys.add(key)
    return keys


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
    used = {key for path in ROOT.glob("agent/**/*.py") if "i18n" not in path.parts
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
