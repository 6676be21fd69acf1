"""What frozen-feature mode (``--set student.encoder=NAME``) costs and saves on anticipation, side by
side in one process and one store:

- ``trained``: the default student, its clip encoder trained with the method (its pretraining read
  from the pretrain cache, as for every method of a comparison after the first);
- ``frozen, cold``: ``student.encoder=ENCODER``, the feature cache empty (every clip encoded);
- ``frozen, cached``: the same again, another method's run in a comparison (features read back).

Each row is a ``student`` run of ``--tier`` (default smoke) on synth; it prints each run's wall
seconds, its ``features`` stage (clips, seconds, source) and the ratios cold / cached and
trained / cached. The rounds alternate the order of the three (ABC, CBA) on fresh stores.

    python benchmarks/perf/frozen_features.py [--encoder tsn-resnet18] [--tier smoke] [--rounds 2]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path


def one(kind: str, encoder: str, tier: str, data: Path) -> tuple[float, dict]:
    import torch

    from xbench.config import RunConfig, load_tiers
    from xbench.registry import build_registry
    from xbench.run import execute, plan

    options = {} if kind == "trained" else {"encoder": encoder}
    cfg = RunConfig(method="student", task="anticipation", budget=tier, task_options={"meteor": False},
                    student_options=options)
    p = plan(build_registry(), cfg, load_tiers())
    t0 = time.perf_counter()
    rec = execute(p, 0, device=torch.device("cpu"), data_root=data)
    wall = time.perf_counter() - t0
    feats = next((s for s in rec.budget.stages if s.stage == "features"), None)
    return wall, ({"clips": feats.samples, "seconds": round(feats.seconds, 2), "source": feats.source}
                  if feats else {})


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--encoder", default="tsn-resnet18")
    ap.add_argument("--tier", default="smoke")
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args()
    os.environ["XBENCH_CLOCK_LIMIT"] = "off"  # the figures are times: no run may be cut short
    data = Path(os.environ.get("XBENCH_DATA") or tempfile.mkdtemp(prefix="xbench-data-"))
    walls: dict[str, list[float]] = {"trained": [], "cold": [], "cached": []}
    for r in range(args.rounds):
        with tempfile.TemporaryDirectory(prefix="xbench-bench-") as home:
            os.environ["XBENCH_HOME"] = home
            one("trained", args.encoder, args.tier, data)  # warm-up: data generated, imports done
            order = ["trained", "cold", "cached"] if r % 2 == 0 else ["cold", "cached", "trained"]
            for kind in order:
                wall, feats = one("frozen" if kind != "trained" else "trained", args.encoder, args.tier, data)
                walls[kind].append(wall)
                print(f"round {r + 1} {kind:8s} {wall:7.2f} s  features: {feats or '-'}", flush=True)
    med = {k: statistics.median(v) for k, v in walls.items()}
    print(f"median wall: trained {med['trained']:.2f} s, frozen cold {med['cold']:.2f} s, "
          f"frozen cached {med['cached']:.2f} s")
    print(f"cold / cached: {med['cold'] / med['cached']:.3f}; trained / cached: {med['trained'] / med['cached']:.3f}")


if __name__ == "__main__":
    main()
