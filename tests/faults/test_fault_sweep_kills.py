"""A sweep killed with SIGKILL at seeded moments and rerun each time (benchmarks/faults/sweep_kills.py,
small): no record lost, duplicated or orphaned, and the last rerun completes the suite."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).parents[2] / "benchmarks" / "faults" / "sweep_kills.py"


def test_a_sweep_killed_and_rerun_loses_duplicates_and_orphans_nothing():
    out = subprocess.run([sys.executable, str(SCRIPT), "--kills", "2", "--max-delay", "8"], capture_output=True,
                         text=True, timeout=900, check=True).stdout
    last = out.splitlines()[-1]
    assert re.fullmatch(r"sweep kills: 2 kill -9 at seeded points \(seed 0\); records lost 0, duplicated 0, "
                        r"orphaned 0; the last rerun exit 0, 4 of 4 runs stored", last), out
