"""What sharing one trained teacher saves in a sweep: for every group of stored runs of a tier
that used the same trained teacher (same teacher, seed, selected step and val scores; tasks with
the same teacher view share one: recognition and retrieval), the teacher's cost paid once (the
run whose teacher stages were computed) against K separate runs each training and running its
own (K x that cost). Read from the run records of a store, e.g. after
``xbench sweep synth-cpu``:

    XBENCH_HOME=<store> python benchmarks/perf/teacher_sharing.py [--tier cpu]
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict

from tabulate import tabulate

from xbench.leaderboard import TEACHER_STAGES
from xbench.store import ResultStore


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tier", default="cpu")
    args = ap.parse_args()
    groups: dict[tuple, list] = defaultdict(list)
    for rec in ResultStore().records(tier=args.tier):
        if rec.evaluated != "student" or not rec.teacher:
            continue
        # one trained teacher: its name, seed and what its selection saw (the same under any cache
        # key, e.g. after the key's layout changed); uncached runs share nothing
        t = rec.teacher
        trained = (t["name"], rec.seed, t.get("selected_step"), json.dumps(t.get("val"), sort_keys=True))
        key = trained if t.get("cache_key") else rec.id
        groups[key].append(rec)
    per_task: dict[tuple[str, str], list[tuple[int, float, float]]] = defaultdict(list)
    for recs in groups.values():
        tasks = " + ".join(sorted({r.task for r in recs}))
        stages = [[s for s in r.budget.stages if s.stage in TEACHER_STAGES] for r in recs]
        cost = max(sum(s.seconds for s in st) for st in stages)  # what training it once took
        paid = sum(s.seconds for st in stages for s in st if s.source == "computed")
        per_task[(tasks, recs[0].teacher["name"])].append((len(recs), paid, cost * len(recs)))
    rows = []
    for (task, teacher), items in sorted(per_task.items()):
        k = sum(n for n, _, _ in items) / len(items)
        paid, separate = sum(p for _, p, _ in items), sum(s for _, _, s in items)
        rows.append((task, teacher, len(items), f"{k:.1f}", f"{paid:.0f}", f"{separate:.0f}",
                     f"{separate / paid:.1f}x" if paid else "-"))
    print(tabulate(rows, headers=("task", "teacher", "seeds", "K methods", "teacher s paid (shared)",
                                  "teacher s if K separate runs", "saved"), tablefmt="github"))


if __name__ == "__main__":
    main()
