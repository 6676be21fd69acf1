"""The time and memory of reading the largest YAML the limits allow (1 MiB, 100,000 values once
aliases are expanded, 64 levels of nesting), each file in a fresh process, beside a plain config
of a few lines; and the hostile files refused: each one's time, memory and message.

    python benchmarks/faults/config_limits.py
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

from xbench.config import YAML_LIMITS

#: one file read in a fresh process: seconds and the peak resident memory it added (MiB)
PROBE = """
import json, resource, sys, time
from pathlib import Path
from xbench.config import load_yaml
from xbench.errors import ConfigError
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
t0 = time.perf_counter()
try:
    load_yaml(Path(sys.argv[1])); outcome = "read"
except ConfigError as exc:
    outcome = "refused: " + str(exc).split(": ", 1)[1]
seconds = time.perf_counter() - t0
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"seconds": seconds, "mib": (peak - base) / 1024, "outcome": outcome}))
"""


def files(tmp: Path) -> dict[str, str]:
    n = YAML_LIMITS["nodes"]
    out = {"a plain config (6 lines)": "method: kd\ntask: recognition\nseed: [0, 1, 2]\nmethod_options:\n  T: 4\n"
                                        "  alpha: 0.9\n"}
    # the most values: a flat list just under the node bound, as short as YAML writes them
    out[f"{n - 2:,} values (list)"] = "x: [" + ",".join("1" for _ in range(n - 3)) + "]\n"
    # the most bytes: one long string just under 1 MiB
    out["1 MiB (one string)"] = "x: " + "a" * (YAML_LIMITS["bytes"] - 8) + "\n"
    # the deepest: 63 levels of nested mappings
    out["63 levels of nesting"] = "".join("  " * d + f"k{d}:\n" for d in range(63)) + "  " * 63 + "v\n"
    # refused: a billion laughs, one value too many, one level too deep, one byte too many
    laughs = "a: &a [1,1,1,1,1,1,1,1,1,1]\n" + "".join(
        f"{chr(98 + i)}: &{chr(98 + i)} [{','.join('*' + chr(97 + i) for _ in range(10))}]\n" for i in range(8))
    out[f"billion laughs ({len(laughs)} bytes)"] = laughs
    out[f"{n:,} values"] = "x: [" + ",".join("1" for _ in range(n)) + "]\n"
    out["20,000 levels of nesting"] = "x: " + "[" * 20000 + "]" * 20000 + "\n"
    out["1 MiB + 1 byte"] = "x: " + "a" * (YAML_LIMITS["bytes"] - 3) + "\n"
    return out


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        print(f"{'file':32} {'bytes':>9} {'seconds':>8} {'MiB':>7}  outcome")
        for name, text in files(Path(tmp)).items():
            path = Path(tmp) / "c.yaml"
            path.write_text(text)
            out = subprocess.run([sys.executable, "-c", PROBE, str(path)], capture_output=True, text=True, check=True)
            r = json.loads(out.stdout)
            print(f"{name:32} {len(text.encode()):>9,} {r['seconds']:>8.3f} {r['mib']:>7.1f}  {r['outcome']}")


if __name__ == "__main__":
    main()
