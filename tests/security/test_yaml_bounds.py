"""Bounded YAML: an alias bomb and a 3,000-deep file are refused quickly, with FILE:LINE, by every
reader of a config (config check, config.apply through the handler, first boot)."""

from __future__ import annotations

import resource
import time
from pathlib import Path

import pytest

from agent.config import loader as config_mod
from agent.lifecycle import firstboot
from agent.sdk.errors import ConfigError
from agent.lifecycle.firstboot import Layout
from agent.config.yamlsource import MAX_DEPTH, load_with_lines


def alias_bomb() -> str:
    """The classic 'billion laughs' (9 levels of 9 aliases): about 350 bytes, 10^9 nodes."""
    lines = ["0: &0 [l,l,l,l,l,l,l,l,l]"]
    for level in range(1, 9):
        refs = ",".join([f"*{level - 1}"] * 9)
        lines.append(f"{level}: &{level} [{refs}]")
    return "\n".join(lines) + "\n"


def deep(levels: int) -> str:
    return "gateway:\n  id: " + "[" * levels + "]" * levels + "\n"


def test_the_bomb_is_small() -> None:
    assert len(alias_bomb()) < 400


def test_an_alias_bomb_is_refused_quickly_and_memory_stays_low() -> None:
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.monotonic()
    with pytest.raises(ConfigError) as caught:
        config_mod.parse(alias_bomb(), "bomb.yaml")
    elapsed = time.monotonic() - started
    grown_mib = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert elapsed < 2.0 and grown_mib < 50, (elapsed, grown_mib)
    [problem] = caught.value.problems
    assert problem.startswith("bomb.yaml:") and "alias" in problem, problem


def test_a_deep_file_is_a_clean_error_with_its_line() -> None:
    with pytest.raises(ConfigError) as caught:
        config_mod.parse(deep(3000), "deep.yaml")
    [problem] = caught.value.problems
    assert problem.startswith("deep.yaml:2: (yaml): nested deeper than"), problem


def test_deep_block_style_and_a_self_referencing_alias() -> None:
    block = "".join("  " * i + "- \n" for i in range(200))
    with pytest.raises(ConfigError, match="nested deeper"):
        config_mod.parse(block, "block.yaml")
    with pytest.raises(ConfigError, match="contains it"):
        config_mod.parse("a: &x [1, *x]\n", "cycle.yaml")


def test_ordinary_aliases_and_depth_within_bounds_still_load() -> None:
    text = ("base: &b {poll: 30s, timeout: 1s}\n"
            "devices:\n" + "".join(f"  - {{id: d{i}, opts: *b}}\n" for i in range(200))
            + "nest: " + "[" * (MAX_DEPTH - 2) + "]" * (MAX_DEPTH - 2) + "\n")
    data, lines = load_with_lines(text)
    assert data["devices"][199]["opts"] == {"poll": "30s", "timeout": "1s"}
    assert lines[("devices", 199)] == 202


def test_first_boot_rejects_a_bomb_and_a_deep_file_with_errors_file_and_rename(
        tmp_path: Path) -> None:
    for name, text in (("bomb", alias_bomb()), ("deep", deep(3000))):
        layout = Layout(tmp_path / name / "fat", tmp_path / name / "etc")
        layout.drop.mkdir(parents=True)
        layout.config_dir.mkdir()
        (layout.drop / "gateway.yaml").write_text(text)
        outcome = firstboot.run(layout, say=lambda _line: None)
        assert outcome.problems, name
        errors = (layout.drop / "batigate-errors.txt").read_text()
        assert "gateway.yaml:" in errors and "(yaml)" in errors, errors
        assert (layout.drop / "gateway.yaml.rejected").exists()
        assert not (layout.drop / "gateway.yaml").exists()
        assert firstboot.main(["--drop", str(layout.drop), "--config-dir",
                               str(layout.config_dir)]) == 0  # nothing dropped any more


def test_a_list_where_a_bus_id_belongs_is_an_error_not_a_crash() -> None:
    """Found by `make fuzz`: `bus: [..]` raised TypeError (unhashable) out of config.parse."""
    text = ("gateway: {id: gw-1, site: s-1}\nmqtt: {host: h, tls: false}\n"
            "buses: [{id: lan, driver: modbus-tcp, host: h, port: 502}]\n"
            "devices:\n- id: vmc-a\n  bus:\n  - lan\n")
    with pytest.raises(ConfigError) as caught:
        config_mod.parse(text, "f.yaml")
    assert any(p.startswith("f.yaml:6: devices[0].bus: unknown bus") for p in
               caught.value.problems), caught.value.problems
