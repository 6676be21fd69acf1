"""The probe script (benchmarks/faults/probes.py) as a user runs it: the installed xbench in fresh
folders, a row a probe. Two of its probes here (a damaged database mended by runs --rebuild, a
contributed record's hostile strings in CSV); its other probes have their tests in this folder
and beside their modules."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).parents[2] / "benchmarks" / "faults" / "probes.py"


def test_the_probe_script_runs_its_probes_and_each_verdict_holds(tmp_path):
    table = tmp_path / "rows.json"
    out = subprocess.run([sys.executable, str(SCRIPT), "--only", "store-0-byte-db", "publish-csv-formulas",
                          "--json", str(table)], capture_output=True, text=True, timeout=600, check=False)
    assert out.returncode == 0, out.stdout + out.stderr
    rows = json.loads(table.read_text())
    assert [(r["probe"], r["group"], r["verdict"]) for r in rows] == [("store-0-byte-db", "store", "ok"),
                                                                      ("publish-csv-formulas", "publish", "ok")]
    assert rows[0]["observed"].endswith("runs --rebuild exit 0, 2 of 2 records back")
    assert rows[1]["observed"] == "exit 0; 92 cells, 2 guarded, 0 open as formulas []"
    assert [line.split()[:2] for line in out.stdout.splitlines()] == [["store-0-byte-db", "ok"],
                                                                      ["publish-csv-formulas", "ok"]]


def test_an_unknown_probe_is_named():
    out = subprocess.run([sys.executable, str(SCRIPT), "--only", "nope"], capture_output=True, text=True,
                         timeout=60, check=False)
    assert out.returncode == 2 and "unknown probe nope (known: cache-0-byte-teacher, " in out.stderr
