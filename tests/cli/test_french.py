"""A technician in France: `init`, `scan mbus`, `selftest` and `config check` speak French when
the locale is French, and `--json` stays English."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from agent.config import loader as config_mod
from agent.cli.main import main
from agent.i18n import set_language
from drivers.mbus.simulator import MBusSimulator
from tests.cli.helpers import colliding_meters, mbus_config, write_config

ROOT = Path(__file__).resolve().parents[2]
FRENCH = {"LANG": "fr_FR.UTF-8", "BATIGATE_LANG": None, "LC_ALL": None, "LC_MESSAGES": None}


@pytest.fixture(autouse=True)
def _back_to_english() -> Iterator[None]:
    # The language is chosen once per process: the other tests in this process read English.
    yield
    set_language(None)


def _french(args: list[str], stdin: str = "") -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in FRENCH}
    return subprocess.run([sys.executable, "-m", "agent", *args], input=stdin, text=True,
                          capture_output=True, timeout=60, check=False, cwd=ROOT,
                          env={**env, "LANG": "fr_FR.UTF-8"})


def test_init_wizard_asks_in_french_and_accepts_oui(tmp_path: Path) -> None:
    out = tmp_path / "gw.yaml"
    answers = "\n".join([
        "Mauvais Id", "gw-0042",       # refused in French, then accepted
        "res-les-pins", "broker.example.org",
        "99999", "8883",               # port out of range, then good
        "", "", "", "",                # CA, cert, key: the defaults; no command key
        "peut-être", "oui",            # neither yes nor no, then "oui"
        "rs485-1", "modbus-rtu", "/dev/ttyUSB0", "neuf mille", "9600", "X", "E",
        "non",                         # no more buses
    ]) + "\n"
    result = _french(["init", "-o", str(out)], answers)
    assert result.returncode == 0, result.stderr
    screen = result.stderr
    for prompt in ("identifiant de la passerelle (par ex. gw-0042)", "port du broker [8883]",
                   "Ajouter un bus de terrain ? [O/n]", "pilote (mbus, modbus-rtu, modbus-tcp)",
                   "vitesse (bauds) [9600]", "parité (N, E, O) [E]",
                   "Ajouter un bus de terrain ? [o/N]"):
        assert prompt in screen, prompt
    assert "Erreur : lettres minuscules, chiffres et '-'" in screen
    assert "Erreur : un numéro de port TCP de 1 à 65535" in screen
    assert "Erreur : répondez o (oui) ou n (non)" in screen
    assert "Erreur : un nombre entier supérieur à zéro" in screen
    assert "Erreur : choisissez parmi : N, E, O" in screen
    assert f"écrit dans {out}" in screen and "remarque : pas de clé de commande" in screen
    for english in ("gateway id", "Add a field bus", "Error", "written to", "baud rate"):
        assert english not in screen, english
    config = config_mod.load(out)
    assert config.gateway.id == "gw-0042" and config.buses[0].baudrate == 9600
    assert config.buses[0].parity == "E"


def test_init_errors_in_french_but_json_stays_english(tmp_path: Path) -> None:
    base = ["init", "--no-input", "--gateway-id", "gw-1", "-o", str(tmp_path / "gw.yaml")]
    human = _french(base)
    assert human.returncode == 2 and "erreur : --site est obligatoire avec --no-input" in \
        human.stderr
    machine = _french([*base, "--json"])
    assert json.loads(machine.stdout) == {"ok": False,
                                          "error": "--site is required with --no-input"}


def test_config_check_names_the_problems_in_french(tmp_path: Path) -> None:
    path = write_config(tmp_path, buses=[], devices=[])
    path.write_text(path.read_text().replace("reconnect_max: 1s",
                                             "reconnect_max: 1s\n  couleur: bleu"))
    result = _french(["config", "check", str(path)])
    assert result.returncode == 2
    lines = result.stderr.splitlines()
    assert lines[0].startswith(f"{path}:") and lines[0].endswith(": mqtt.couleur: clé inconnue")
    assert lines[-1] == "1 problème(s)"
    # the rules are checked once the sections are sound: a duration, a missing field, a bad id
    path = write_config(tmp_path, buses=[], devices=[], rules=[
        {"id": "r1", "type": "threshold", "point": "a/b", "above": 1, "for": "dix minutes"},
        {"id": "Règle 2", "type": "threshold", "above": 1}])
    lines = _french(["config", "check", str(path)]).stderr.splitlines()
    expected = (": rules[0].for: 'dix minutes' n'est pas une durée ; écrivez-la comme 500ms",
                ": rules[1].id: uniquement des lettres minuscules, des chiffres et '-'",
                ": rules[1].point: obligatoire, absent")
    for text in expected:
        assert any(text in line and line.startswith(f"{path}:") for line in lines), (text, lines)


async def test_scan_mbus_in_french_against_the_simulator(tmp_path: Path) -> None:
    # Two meters left at the factory address 0, one at 3: the collision advice in French.
    simulator = MBusSimulator(colliding_meters())
    port = await simulator.start()
    try:
        path = mbus_config(tmp_path, port)
        args = ["scan", "mbus", "--bus", "meters", "--addresses", "0-4", "--timeout", "0.1",
                "--config", str(path)]
        result = await asyncio.to_thread(CliRunner().invoke, main, [*args, "--add"], env=FRENCH)
        assert result.exit_code == 0, result.output
        screen = result.output
        assert "3 compteur(s) sur meters" in screen
        assert "trouvé par" in screen and "fabricant" in screen
        assert ("collision à l'adresse primaire 0 : 2 compteurs partagent cette adresse "
                "primaire (41000001, 41000002)") in screen
        assert "ajouté(s) à la configuration : meter-61000003, meter-41000001, meter-41000002" \
            in screen
        assert "meter(s) on" not in screen and "collision at" not in screen
        again = await asyncio.to_thread(CliRunner().invoke, main, [*args, "--json"], env=FRENCH)
        doc = json.loads(again.output)
        assert doc["collisions"] == ["primary 0"]  # machine output: the scan's own words
        assert {m["how"] for m in doc["found"]} == {"primary", "secondary"}
    finally:
        await simulator.stop()


def test_selftest_details_in_french_and_json_in_english(tmp_path: Path) -> None:
    path = write_config(tmp_path, buses=[
        {"id": "rs485-1", "driver": "modbus-rtu", "port": str(tmp_path / "ttyUSB9")}],
        devices=[])
    args = ["selftest", "--timeout", "0.5", "--config", str(path)]
    human = CliRunner().invoke(main, args, env=FRENCH)
    assert human.exit_code == 1
    assert "port série" in human.output and "introuvable" in human.output
    assert "TLS désactivé" in human.output and "que faire" in human.output
    assert "not found" not in human.output
    machine = CliRunner().invoke(main, [*args, "--json"], env=FRENCH)
    checks = {c["name"]: c for c in json.loads(machine.output)["checks"]}
    assert checks["bus rs485-1"]["detail"] == f"serial port {tmp_path / 'ttyUSB9'} not found"
    assert checks["tls"]["detail"] == "TLS is off (tls: false)"
    assert "by-id" in checks["bus rs485-1"]["fix"] and "branchez" not in checks["bus rs485-1"]["fix"]
