"""Real video into the student step: xbench's path against a hand-written decord + torch loop.

Generates H.264 clips (with AAC audio) at 240p and at 480p in a class-per-folder tree and, in one
process, for each resolution:

- ``hand``: a plain loop as one would write it: decord opens each clip, reads TSN's 8 segment
  frames, torch resizes the short side to 128 and centre-crops 112, batches of 8 go into a
  ``frame-cnn`` training step;
- ``cold``: xbench's ``folder`` dataset on an empty cache: manifest (probe, sha256), decoding into
  the cache with N worker processes, then the same steps through the lazy ``Clips`` column;
- ``warm``: the same again, the cache filled.

Prints clips/s of each (through the training step, and data only), the decode cache's bytes per
clip against the mp4's, and peak RSS of a process that reads one epoch of a split of ``--rss``
small clips and of a tenth of it (the ratio shows whether memory grows with the split).

    python benchmarks/perf/real_data.py [--clips 48] [--workers 2] [--rss 2000]
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from xbench.data import encoded, video
from xbench.data.io import load_decord
from xbench.models import FrameCNNStudent
from xbench.specs import ModelContext

CLASSES, BATCH, FRAMES, SHORT, CROP = 4, 8, 8, 128, 112


def make_tree(root: Path, n: int, height: int, width: int, frames: int = 50) -> None:
    per = max(1, n // CLASSES)
    for label in range(CLASSES):
        for i in range(per):
            k = label * per + i
            encoded.write_video(root / f"class{label}" / f"v{k:05d}.mp4", encoded.clip(label, CLASSES, frames, height,
                                width, k), 25.0, "mp4", encoded.tone(label, frames / 25.0, 16000, k), 16000)


def step_fn():
    torch.manual_seed(0)
    model = FrameCNNStudent(ModelContext(num_classes=CLASSES, shapes={}))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)

    def step(rgb: torch.Tensor, y: torch.Tensor) -> None:
        loss = F.cross_entropy(model({"rgb": rgb})["logits"], y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return step


def hand(root: Path, train: bool) -> tuple[float, float]:
    """(seconds through the steps, seconds of data only) for one pass over the tree."""
    decord = load_decord()
    files = sorted(root.rglob("*.mp4"))
    labels = [int(f.parent.name[5:]) for f in files]
    step, data_s, started = step_fn(), 0.0, time.perf_counter()
    for i in range(0, len(files), BATCH):
        t = time.perf_counter()
        clips = []
        for f in files[i: i + BATCH]:
            r = decord.VideoReader(str(f), num_threads=1)
            n = len(r)
            idx = (np.floor((np.arange(FRAMES) + 0.5) * n / FRAMES)).astype(int).tolist()
            x = torch.from_numpy(r.get_batch(idx).asnumpy()).permute(0, 3, 1, 2).float()
            h, w = video.resized_shape(x.shape[2], x.shape[3], SHORT)
            x = F.interpolate(x, size=(h, w), mode="bilinear", antialias=True).round().clamp(0, 255).to(torch.uint8)
            y0, x0 = (h - CROP) // 2, (w - CROP) // 2
            clips.append(x[:, :, y0: y0 + CROP, x0: x0 + CROP])
        rgb, y = torch.stack(clips), torch.tensor(labels[i: i + BATCH])
        data_s += time.perf_counter() - t
        if train:
            step(rgb, y)
    return time.perf_counter() - started, data_s


def xbench_path(root: Path, workers: int, train: bool) -> tuple[int, float, float, int]:
    """(train clips, seconds from opening the dataset through the steps, seconds of data only,
    cache bytes of the train clips). A dataset needs val and test: a tenth each is carved off."""
    from xbench.data.real import FolderOptions, open_folder
    from xbench.tasks import RecognitionOptions, RecognitionTask

    started = time.perf_counter()
    os.environ["XBENCH_DECODE_WORKERS"] = str(workers)
    opts = FolderOptions(root=str(root), short_side=SHORT, crop=CROP, frames=FRAMES, val_fraction=0.1,
                         test_fraction=0.1)
    ds = open_folder(opts, None)
    videos = ds.videos("train")
    ex = RecognitionTask(RecognitionOptions()).examples(ds, "train", ("rgb",), seed=0)
    data_s = time.perf_counter() - started
    step = step_fn()
    for i in range(0, len(ex), BATCH):
        t = time.perf_counter()
        batch = ex.take(torch.arange(i, min(i + BATCH, len(ex))), ("rgb", "label"))
        data_s += time.perf_counter() - t
        if train:
            step(batch["rgb"], batch["label"])
    size = sum(ds.frame_file(v).path.stat().st_size for v in videos)
    return len(ex), time.perf_counter() - started, data_s, size


def rss_child(root: str) -> None:
    """One epoch of the split through the lazy column; prints peak RSS in MiB."""
    from xbench.data.real import FolderOptions, open_folder
    from xbench.tasks import RecognitionOptions, RecognitionTask

    ds = open_folder(FolderOptions(root=root, short_side=32, crop=32, frames=4, val_fraction=0.1,
                                   test_fraction=0.1), None)
    ex = RecognitionTask(RecognitionOptions()).examples(ds, "train", ("rgb",), seed=0)
    for i in range(0, len(ex), 32):
        ex.take(torch.arange(i, min(i + 32, len(ex))), ("rgb",))
    print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)


def peak_rss(root: Path, env: dict[str, str]) -> float:
    out = subprocess.run([sys.executable, __file__, "--rss-child", str(root)], env=env, capture_output=True,
                         text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clips", type=int, default=48, help="clips per resolution")
    ap.add_argument("--workers", type=int, default=2, help="decoding processes of the cold cache")
    ap.add_argument("--rss", type=int, default=2000, help="clips of the split whose peak RSS is measured")
    ap.add_argument("--rss-child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.rss_child:
        rss_child(args.rss_child)
        return
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        os.environ["XBENCH_DATA"] = str(base / "data")
        print(f"{args.clips} clips of 2 s at 25 fps per resolution, batches of {BATCH}, {FRAMES} frames, "
              f"short side {SHORT}, crop {CROP}; cold cache with {args.workers} workers")
        print(f"{'clips':<6} {'path':<6} {'clips/s (step)':>15} {'clips/s (data)':>15}")
        for name, (h, w) in (("240p", (240, 426)), ("480p", (480, 854))):
            root = base / name
            make_tree(root, args.clips, h, w)
            n = len(list(root.rglob("*.mp4")))
            mp4 = sum(f.stat().st_size for f in root.rglob("*.mp4"))
            total, data = hand(root, True)
            rows = [("hand", n / total, n / data)]
            m, total, data, cache = xbench_path(root, args.workers, True)
            rows.append(("cold", m / total, m / data))
            m, total, data, _ = xbench_path(root, args.workers, True)
            rows.append(("warm", m / total, m / data))
            mp4 = mp4 / n
            for path, a, b in rows:
                print(f"{name:<6} {path:<6} {a:>15.1f} {b:>15.1f}")
            hand_rate, warm_rate, cold_rate = rows[0][1], rows[2][1], rows[1][1]
            print(f"{name}: warm/hand = {warm_rate / hand_rate:.2f}, cold/hand = {cold_rate / hand_rate:.2f} "
                  f"(through the step); cache {cache / m / 1024:.0f} KiB per clip vs mp4 {mp4 / 1024:.0f} KiB "
                  f"({cache / m / mp4:.1f}x)")
        small = base / "rss"
        big, tenth = args.rss, max(CLASSES, args.rss // 10)
        make_tree(small / "all", big, 48, 64, frames=8)
        part = small / "tenth"
        for f in sorted((small / "all").rglob("*.mp4"))[:: big // tenth]:
            dest = part / f.relative_to(small / "all")
            dest.parent.mkdir(parents=True, exist_ok=True)
            os.link(f, dest)
        env = dict(os.environ)
        a, b = peak_rss(part, env), peak_rss(small / "all", env)
        n_part = len(list(part.rglob("*.mp4")))
        print(f"peak RSS reading one epoch: {n_part} clips {a:.0f} MiB, {big} clips {b:.0f} MiB "
              f"(ratio {b / a:.2f}; the split is {big / n_part:.0f}x larger)")


if __name__ == "__main__":
    main()
