"""``xbench data prepare`` on generated clips: its time per 1,000 clips, and its resume after a kill.

Writes N real H.264 + AAC clips (240p, 1 s at 25 fps) in class folders, then:

1. ``prepare`` from nothing (manifest: stat, sha256, probe of every file; decoding every clip into
   the cache), timed;
2. the same from nothing again, killed (SIGKILL) once about half the files are described, then
   run again: the time of the resumed run and how many files it had left to describe;
3. ``prepare`` once more with everything in place (the no-op cost).

    python benchmarks/perf/prepare.py [--clips 1000] [--jobs 2]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from xbench.data import encoded

CLASSES = 10


def prepare(root: Path, jobs: int, env: dict[str, str], kill_after: int | None = None) -> tuple[float, str]:
    cmd = [sys.executable, "-m", "xbench.cli", "data", "prepare", "folder", "--root", str(root), "--jobs", str(jobs)]
    started = time.perf_counter()
    if kill_after is None:
        out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
        return time.perf_counter() - started, (out.stdout.strip().splitlines() or [out.stderr[-300:]])[-1]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    while proc.poll() is None:  # kill once the partial manifest holds kill_after files
        for partial in Path(env["XBENCH_DATA"]).glob("datasets/folder-*/manifest.partial.json"):
            try:
                if len(json.loads(partial.read_text())["files"]) >= kill_after:
                    proc.send_signal(signal.SIGKILL)
            except (OSError, ValueError, KeyError):
                pass
        time.sleep(0.2)
    return time.perf_counter() - started, f"killed (exit {proc.returncode})"


def described(data: Path) -> int:
    for partial in data.glob("datasets/folder-*/manifest.partial.json"):
        return len(json.loads(partial.read_text())["files"])
    return 0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clips", type=int, default=1000)
    ap.add_argument("--jobs", type=int, default=2)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root, data = Path(tmp) / "videos", Path(tmp) / "data"
        per = args.clips // CLASSES
        t = time.perf_counter()
        for label in range(CLASSES):
            for i in range(per):
                k = label * per + i
                encoded.write_video(root / f"class{label}" / f"v{k:05d}.mp4", encoded.clip(label, CLASSES, 25, 240, 320, k),
                                    25.0, "mp4", encoded.tone(label, 1.0, 16000, k), 16000)
        mp4 = sum(f.stat().st_size for f in root.rglob("*.mp4"))
        print(f"{per * CLASSES} clips of 240p, 1 s at 25 fps with AAC ({mp4 / 2**20:.0f} MiB) written in "
              f"{time.perf_counter() - t:.0f} s; prepare with --jobs {args.jobs}")
        env = dict(os.environ, XBENCH_DATA=str(data))
        full, line = prepare(root, args.jobs, env)
        print(f"from nothing: {full:.1f} s ({1000 * full / (per * CLASSES):.1f} s per 1,000 clips)\n  {line}")
        shutil.rmtree(data)
        half = per * CLASSES // 2
        killed, _ = prepare(root, args.jobs, env, kill_after=half)
        kept = described(data)
        resumed, line = prepare(root, args.jobs, env)
        print(f"killed after {killed:.1f} s with {kept} files described; the rerun took {resumed:.1f} s "
              f"(from nothing: {full:.1f} s)\n  {line}")
        noop, line = prepare(root, args.jobs, env)
        print(f"with everything in place: {noop:.1f} s\n  {line}")


if __name__ == "__main__":
    main()
