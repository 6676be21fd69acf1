"""Each hostile input of the probe (issue 25) meets one line naming the file or option, exit 2,
and leaves nothing stored: configs, suites, tier files and records that are too big, too deep,
alias bombs or not UTF-8; options that are NaN, out of range or size the data absurdly; names
carrying control characters; a publishing folder holding files of the user's."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from xbench.cli import main
from xbench.config import packaged
from xbench.store import ResultStore

RUN = ["run", "--method", "kd", "--task", "recognition", "--tier", "smoke", "--quiet"]
#: 10**9 values once expanded, under an option a run reads (whose error once showed the expanded value)
LAUGHS = "method: kd\nmethod_options:\n  T: [&a [1,1,1,1,1,1,1,1,1,1], " + ", ".join(
    f"&{chr(98 + i)} [{','.join('*' + chr(97 + i) for _ in range(10))}]" for i in range(8)) + "]\n"
SUITE = "name: s\ntier: smoke\nseeds: [0]\ntasks: [recognition]\nmethods: [student]\n"

#: name -> (file name, its bytes, the command given the file's path, what the line says)
FILES = {
    "billion laughs": ("c.yaml", LAUGHS.encode(), lambda f: [*RUN, "--config", f],
                       "more than 100,000 values once its aliases are expanded"),
    "50 MB config": ("c.yaml", b"method: kd\nmethod_options:\n  T: " + b"a" * 50_000_000 + b"\n",
                     lambda f: [*RUN, "--config", f], "larger than 1 MiB: not a config"),
    "20,000-deep lists": ("c.yaml", b"x: " + b"[" * 20000 + b"]" * 20000 + b"\n", lambda f: [*RUN, "--config", f],
                          "nested deeper than 64 levels"),
    "config not UTF-8": ("c.yaml", "method: kd  # caf\xe9\n".encode("latin-1"), lambda f: [*RUN, "--config", f],
                         "not UTF-8 text (byte 17)"),
    "suite not UTF-8": ("s.yaml", (SUITE + "# caf\xe9\n").encode("latin-1"), lambda f: ["sweep", f],
                        f"not UTF-8 text (byte {len(SUITE) + 5})"),
    "record not UTF-8": ("r.json", b'{"id": "caf\xe9"}', lambda f: ["reproduce", f], "not UTF-8 text (byte 11)"),
    "suite named ../../x": ("s.yaml", SUITE.replace("name: s", "name: ../../x").encode(), lambda f: ["sweep", f],
                            "name '../../x' is not a slug"),
}


def _one_line(capsys) -> str:
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("xbench: error: "), err
    return err.rstrip("\n")


def _nothing_stored() -> None:
    home = Path(os.environ["XBENCH_HOME"])
    assert not list(home.glob("runs/*")) and (not (home / "results.sqlite").exists() or ResultStore().records() == [])


@pytest.mark.parametrize("case", FILES, ids=list(FILES))
def test_a_hostile_file_is_one_line_naming_it(tmp_path, capsys, case):
    name, content, argv, says = FILES[case]
    path = tmp_path / name
    path.write_bytes(content)
    assert main(argv(str(path))) == 2
    line = _one_line(capsys)
    assert line.startswith(f"xbench: error: {path}: ") and says in line, line
    _nothing_stored()
    assert [p.name for p in tmp_path.iterdir()] == [name]  # nothing written, not even the home


#: an option -> what the line says
OPTIONS = {
    "dataset.procedures=1000000000": "dataset 'synth' options: procedures must be at most 10,000",
    "budget.max_seconds=.nan": "key 'max_seconds': expected a finite number, got nan",
    "budget.max_seconds=-1": "max_seconds",
    "method.T=.nan": "method 'kd' options: key 'T': expected a finite number, got nan",
}


@pytest.mark.parametrize("option", OPTIONS)
def test_a_hostile_option_is_one_line_naming_it_and_never_blamed_on_a_plugin(capsys, option):
    assert main([*RUN, "--set", option]) == 2
    line = _one_line(capsys)
    assert OPTIONS[option] in line and "plugin" not in line, line
    _nothing_stored()


#: a tier's (section, key, value) -> what the line says after the file's name
TIERS = {
    "lr=-1": ("optimizer", "lr", -1, "tier 'smoke': key 'optimizer': need lr > 0, weight_decay >= 0"),
    "lr=nan": ("optimizer", "lr", float("nan"), "key 'optimizer': key 'lr': expected a finite number, got nan"),
    "weight_decay=-1": ("optimizer", "weight_decay", -1, "key 'optimizer': need lr > 0, weight_decay >= 0"),
    "warmup_steps=-1": ("schedule", "warmup_steps", -1, "key 'schedule': warmup_steps must be >= 0"),
}


@pytest.mark.parametrize("case", TIERS)
def test_a_tier_file_out_of_range_is_one_line_naming_the_file_and_key(tmp_path, monkeypatch, capsys, case):
    section, key, value, says = TIERS[case]
    tiers = yaml.safe_load(packaged("budgets.yaml").read_text())
    tiers["smoke"][section] = {**tiers["smoke"][section], key: value}
    path = tmp_path / "budgets.yaml"
    path.write_text(yaml.safe_dump(tiers))
    monkeypatch.setenv("XBENCH_BUDGETS", str(path))
    assert main(RUN) == 2
    line = _one_line(capsys)
    assert line.startswith(f"xbench: error: {path}: ") and says in line, line
    _nothing_stored()


def test_a_name_with_control_characters_is_echoed_escaped(capsys):
    assert main(["run", "--method", "kd\x1b[2J\rkd", "--task", "recognition"]) == 2
    line = _one_line(capsys)
    assert line.startswith("xbench: error: unknown method 'kd\\x1b[2J") and "\x1b" not in line and "\r" not in line


def test_a_publishing_folder_of_the_users_is_refused_and_kept(tmp_path, capsys):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "README.md").write_text("my notes\n")
    assert main(["leaderboard", "--task", "recognition", "--out", str(mine)]) == 2
    line = _one_line(capsys)
    assert line.startswith(f"xbench: error: {mine}: the folder holds files xbench did not write (README.md)")
    assert [p.name for p in mine.iterdir()] == ["README.md"] and (mine / "README.md").read_text() == "my notes\n"


def test_the_largest_configs_the_limits_allow_are_read_and_the_hostile_ones_refused():
    """benchmarks/faults/config_limits.py, each file in a fresh process: the outcome column."""
    script = Path(__file__).parents[2] / "benchmarks" / "faults" / "config_limits.py"
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=600,
                         check=True).stdout.splitlines()
    assert [line.split("  ")[0].strip() for line in out[1:]] == [
        "a plain config (6 lines)", "99,998 values (list)", "1 MiB (one string)", "63 levels of nesting",
        "billion laughs (332 bytes)", "100,000 values", "20,000 levels of nesting", "1 MiB + 1 byte"]
    assert [line.split("  ")[-1].strip() for line in out[1:]] == [
        "read", "read", "read", "read",
        "refused: more than 100,000 values once its aliases are expanded",
        "refused: more than 100,000 values once its aliases are expanded",
        "refused: nested deeper than 64 levels", "refused: larger than 1 MiB: not a config"]
