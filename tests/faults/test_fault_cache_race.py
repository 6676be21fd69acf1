"""Writers racing on one teacher-cache key (benchmarks/faults/cache_race.py, small): every claim
reads a whole entry whose weights are its record's, or builds one; nothing raises."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).parents[2] / "benchmarks" / "faults" / "cache_race.py"


def test_racing_claims_of_one_key_raise_nothing_and_read_nothing_torn():
    out = subprocess.run([sys.executable, str(SCRIPT), "--procs", "3", "--iters", "40"], capture_output=True,
                         text=True, timeout=600, check=True).stdout
    found = re.fullmatch(r"cache race: 3 processes x 40 claims of one key: (\d+) errors, (\d+) torn reads, "
                         r"(\d+) hits, (\d+) builds\n", out)
    assert found, out
    errors, torn, hits, builds = map(int, found.groups())
    assert (errors, torn) == (0, 0) and hits + builds == 120 and hits > 0 and builds > 1
