"""The probe script (benchmarks/faults/probes.py) as a user runs it: the installed xbench in fresh
folders, a row a probe. One of its probes here (a contributed record's hostile strings in CSV);
what its others probe has its tests in this folder."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).parents[2] / "benchmarks" / "faults" / "probes.py"


def test_the_probe_script_runs_its_probes_and_each_verdict_holds(tmp_path):
    table = tmp_path / "rows.json"
    out = subprocess.run([sys.executable, str(SCRIPT), "--only", "publish-csv-formulas", "--json", str(table)],
                         capture_output=True, text=True, timeout=600, check=False)
    assert out.returncode == 0, out.stdout + out.stderr
    assert json.loads(table.read_text()) == [{
        "probe": "publish-csv-formulas", "group": "publish",
        "expected": "CSV: no cell of any column opens as a formula, whatever a record says",
        "observed": "exit 0; 92 cells, 2 guarded, 0 open as formulas []", "verdict": "ok"}]
    assert out.stdout == "publish-csv-formulas               ok      exit 0; 92 cells, 2 guarded, 0 open as formulas []\n"


def test_an_unknown_probe_is_named():
    out = subprocess.run([sys.executable, str(SCRIPT), "--only", "nope"], capture_output=True, text=True,
                         timeout=60, check=False)
    assert out.returncode == 2 and "unknown probe nope (known: cache-0-byte-teacher, " in out.stderr
