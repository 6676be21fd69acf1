"""N processes x M claims of one teacher-cache key, as a sweep's parallel jobs make them: each
claim loads the entry, or (a miss) takes its lock, "trains" (fills the weights with a value of its
own) and saves it with that value in its record; every third iteration a process drops the
entry's record (an invalidated entry), so rebuilds race with loads. Counted: exceptions raised
(must be 0), torn reads (weights that are not the record's value: must be 0), hits and builds.

    python benchmarks/faults/cache_race.py [--procs 4] [--iters 150]
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import queue
import tempfile
from pathlib import Path

import torch

from xbench.cache import TeacherCache


def worker(rank: int, root: str, iters: int, out: mp.Queue) -> None:
    torch.set_num_threads(1)
    model = torch.nn.Linear(64, 64)
    counts = {"errors": 0, "torn": 0, "hits": 0, "builds": 0, "first_error": ""}
    for i in range(iters):
        cache = TeacherCache(Path(root), "one-key")
        # an xbench before entries were claimed (PYTHONPATH at an older checkout) loads unlocked
        claim, release = getattr(cache, "claim", cache.load), getattr(cache, "release", lambda: None)
        try:
            hit = claim(model)
            if hit is None:
                value = float(rank * 100_000 + i)
                with torch.no_grad():
                    for p in model.parameters():
                        p.fill_(value)
                cache.save(model, set(), {"value": value})
                counts["builds"] += 1
            else:
                counts["hits"] += 1
                if any(not torch.all(p == hit["value"]) for p in model.parameters()):
                    counts["torn"] += 1
            if i % 3 == rank % 3:
                (cache.dir / "record.json").unlink(missing_ok=True)
        except Exception as exc:  # noqa: BLE001 - any error is what the measurement counts
            counts["errors"] += 1
            counts["first_error"] = counts["first_error"] or f"{type(exc).__name__}: {exc}"
            release()
    out.put(counts)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--procs", type=int, default=4)
    ap.add_argument("--iters", type=int, default=150)
    args = ap.parse_args()
    ctx = mp.get_context("spawn")
    with tempfile.TemporaryDirectory() as root:
        out = ctx.Queue()
        procs = [ctx.Process(target=worker, args=(r, root, args.iters, out)) for r in range(args.procs)]
        for p in procs:
            p.start()
        results = []
        while len(results) < len(procs):
            try:
                results.append(out.get(timeout=5))
            except queue.Empty:
                # a worker that died without its counts (killed, or an error outside a claim)
                # never reports: say so rather than wait for it
                if all(not p.is_alive() for p in procs) and out.empty():
                    dead = [p.exitcode for p in procs]
                    raise SystemExit(f"cache race: {len(procs) - len(results)} worker(s) died without their "
                                     f"counts (exit codes {dead})") from None
        for p in procs:
            p.join()
    total = {k: sum(r[k] for r in results) for k in ("errors", "torn", "hits", "builds")}
    print(f"cache race: {args.procs} processes x {args.iters} claims of one key: {total['errors']} errors, "
          f"{total['torn']} torn reads, {total['hits']} hits, {total['builds']} builds")
    for r in results:
        if r["first_error"]:
            print(f"  first error: {r['first_error']}")


if __name__ == "__main__":
    main()
