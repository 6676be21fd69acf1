"""Optical flow computed once at data preparation, stored beside the videos, read as a modality.

Real datasets have no motion fields: flow teachers (Dai et al., and two-stream models in
general) read flow that was computed from the decoded frames before training, as the papers do
(TV-L1 in most, Farneback where speed matters). ``xbench data flow`` writes, for every video
under a folder, a ``.npy`` array in the layout ``synth`` stores its exact motion fields in, so a
dataset adapter reads either with the same reader (:func:`xbench.data.io.read_array`):

* ``(N, 2, h, w)`` float16, ``flow[f]`` the motion from frame ``f`` to ``f + 1`` (x then y), in
  pixels of the decoded frame; the last frame, which has no successor, carries zeros;
* ``h, w`` are the frame's size divided by ``pool``, each value the mean over its ``pool x pool``
  block (``synth`` pools its fields by 2).

Farneback's dense flow is in OpenCV's core module (``opencv-python-headless``, the ``flow``
extra); TV-L1 needs the contrib build and is not offered. Parameters are OpenCV's commonly used
ones (pyramid scale 0.5, 3 levels, window 15, 3 iterations, poly_n 5, sigma 1.2)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from xbench.data import io
from xbench.data import video as vid
from xbench.errors import DataError, XbenchError

VIDEO_SUFFIXES = (".mp4", ".avi", ".mkv", ".webm", ".mov")


@dataclass(frozen=True)
class FarnebackOptions:
    pyr_scale: float = 0.5
    levels: int = 3
    winsize: int = 15
    iterations: int = 3
    poly_n: int = 5
    poly_sigma: float = 1.2


def _cv2():
    try:
        import cv2
    except ImportError as exc:  # an optional dependency: only data preparation needs it
        raise XbenchError("optical flow needs OpenCV: pip install 'xbench[flow]' "
                          "(opencv-python-headless)") from exc
    return cv2


def pool_flow(flow: np.ndarray, pool: int) -> np.ndarray:
    """(N, 2, H, W) motion fields -> (N, 2, H/pool, W/pool), each value its block's mean (the
    units stay pixels of the full frame). ``synth`` stores its exact fields pooled by this too."""
    n, c, height, width = flow.shape
    return flow.reshape(n, c, height // pool, pool, width // pool, pool).mean(axis=(3, 5))


def optical_flow(frames: np.ndarray, pool: int = 2, opts: FarnebackOptions = FarnebackOptions()) -> np.ndarray:
    """Dense Farneback flow of uint8 RGB frames (N, H, W, 3) -> (N, 2, H/pool, W/pool) float16."""
    cv2 = _cv2()
    n, height, width = frames.shape[:3]
    if height % pool or width % pool:
        raise DataError(f"frame size {height}x{width} is not divisible by the flow pooling {pool}")
    gray = [cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) for f in frames]
    out = np.zeros((n, 2, height // pool, width // pool), dtype=np.float32)
    for f in range(n - 1):
        field = cv2.calcOpticalFlowFarneback(gray[f], gray[f + 1], None, opts.pyr_scale, opts.levels,
                                             opts.winsize, opts.iterations, opts.poly_n,
                                             opts.poly_sigma, 0)  # (H, W, 2)
        # pooled frame by frame: a long video's full-resolution flow need not fit in memory
        out[f] = pool_flow(field.transpose(2, 0, 1)[None], pool)[0]
    return out.astype(np.float16)


def find_videos(src: Path) -> list[Path]:
    """The video files under ``src`` (or ``src`` itself), sorted."""
    if src.is_file():
        return [src]
    if not src.is_dir():
        raise DataError(f"no such video file or folder: {src}")
    return sorted(p for p in src.rglob("*") if p.suffix.lower() in VIDEO_SUFFIXES and p.is_file()
                  and ".tmp." not in p.name)


def _frames(path: Path) -> np.ndarray:
    """Every frame of a video at its own size, decoded as the real-video datasets decode it (decord,
    or PyAV where decord cannot read the file)."""
    p = vid.probe(path)
    return vid.read_frames(path, p, np.arange(p.frames), min(p.height, p.width))


def prepare_flow(src: Path, out: Path, *, pool: int = 2, opts: FarnebackOptions = FarnebackOptions(),
                 overwrite: bool = False,
                 log: Callable[[str], None] = lambda msg: None) -> dict[str, int]:
    """Flow of every video under ``src`` into ``out``, mirroring the relative paths with a
    ``.npy`` suffix. Files already there are kept (an interrupted preparation resumes) unless
    ``overwrite``; each array is written atomically. A video that cannot be decoded stops the
    preparation with an error naming it, after the ones before it were written."""
    videos = find_videos(src)
    if not videos:
        raise DataError(f"no video files ({', '.join(VIDEO_SUFFIXES)}) under {src}")
    _cv2()  # fail before decoding anything when OpenCV is missing
    base = src if src.is_dir() else src.parent
    done = {"written": 0, "kept": 0}
    for i, video in enumerate(videos, 1):
        target = out / video.relative_to(base).with_suffix(".npy")
        if target.is_file() and not overwrite:
            done["kept"] += 1
            continue
        io.write_array(target, optical_flow(_frames(video), pool, opts))
        done["written"] += 1
        log(f"[{i}/{len(videos)}] {target}")
    return done
