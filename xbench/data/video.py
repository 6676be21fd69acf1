"""Reading real video files: probe, sample frames, resize, and read the audio track.

decord is the fast path for frames; a stream decord cannot open (AV1, some containers) is read
with PyAV, and only a file neither can read is "corrupt". Both give the same RGB frames for the
streams both read, and every frame is resized here by one function (torch, bilinear with
antialiasing), so which reader ran never changes a pixel the student sees. Audio is always read
with PyAV (from the container, or from a ``.wav`` sidecar), resampled to mono at the rate asked.

Frame sampling strategies (mmaction2's ``SampleFrames`` and TSN's segments), in source frames of
the window ``[start, end)`` seconds:

- ``segments``: the window cut into ``frames`` equal segments, the middle frame of each (TSN's
  test-time sampling; decoded once, so the same frames at train time);
- ``dense``: every ``stride``-th frame; a clip is ``frames`` consecutive ones of them, its start
  drawn at train time and centred at evaluation (by :mod:`xbench.data.clips`);
- ``fps``: every frame at a target rate (nearest source frame), e.g. for per-frame detection.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from xbench.data import io
from xbench.errors import DataError, MissingAudio

Sampling = Literal["segments", "dense", "fps"]
#: frames decoded and resized per batch: bounds the memory of a long high-resolution video
CHUNK = 32


@dataclass(frozen=True)
class Probe:
    """What a video file holds, as read from its container."""

    frames: int
    fps: float
    width: int
    height: int
    has_audio: bool
    #: the reader its frames are decoded with: "decord", or "pyav" where decord cannot open it
    reader: str

    @property
    def duration(self) -> float:
        return self.frames / self.fps if self.fps > 0 else 0.0


def reader_versions() -> dict[str, str | None]:
    """The readers' versions: decoded frames depend on them (part of the decode cache key)."""
    import av

    decord = io.load_decord()
    return {"decord": getattr(decord, "__version__", "?"), "pyav": av.__version__}


def _first_line(exc: BaseException) -> str:
    return (str(exc).splitlines() or [type(exc).__name__])[0][:200]


def probe(path: Path) -> Probe:
    """Frame count, rate, size and audio of ``path``; DataError naming the file if neither decord
    nor PyAV can decode its first frame."""
    if not path.is_file():
        raise DataError(f"missing video file {path}")
    has_audio, pyav_error = False, None
    try:
        import av

        with av.open(str(path)) as container:
            has_audio = bool(container.streams.audio)
    except Exception as exc:  # noqa: BLE001 - PyAV's av.error.* or OSError: kept, raised if decord fails too
        pyav_error = exc
    try:
        reader = io.load_decord().VideoReader(str(path), num_threads=1)
        n, fps = len(reader), float(reader.get_avg_fps())
        # the first frame through get_batch, as training reads them: decord opens some streams
        # it then reads wrongly (4-channel frames from MPEG-4 part 2 at some sizes); those go to
        # PyAV. (Reading the last frame too, for truncated files, doubled the cost of a probe: a
        # frame a truncated file lacks is an error naming the file when it is decoded.)
        first = reader.get_batch([0]).asnumpy() if n > 0 else None
        if first is not None and fps > 0 and first.ndim == 4 and first.shape[3] == 3:
            return Probe(n, fps, first.shape[2], first.shape[1], has_audio, "decord")
    except Exception:  # noqa: BLE001, S110 - decord's DECORDError or RuntimeError: PyAV reads it below
        pass
    if pyav_error is not None:
        raise DataError(f"corrupt video file {path}: {_first_line(pyav_error)}") from pyav_error
    try:
        n, fps, height, width = _pyav_count(path)
    except Exception as exc:
        raise DataError(f"corrupt video file {path}: {_first_line(exc)}") from exc
    if n == 0:
        raise DataError(f"corrupt video file {path}: no decodable frame")
    return Probe(n, fps, width, height, has_audio, "pyav")


def _pyav_count(path: Path) -> tuple[int, float, int, int]:
    """Frames (counted by decoding: containers such as webm do not store the count), rate, size."""
    import av

    with av.open(str(path)) as container:
        if not container.streams.video:
            raise DataError(f"corrupt video file {path}: no video stream")
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        fps = float(stream.average_rate or stream.base_rate or 0)
        n, height, width = 0, stream.height, stream.width
        for _ in container.decode(stream):
            n += 1
    return n, fps, height, width


def frame_indices(p: Probe, sampling: Sampling, frames: int, stride: int, fps: float,
                  start: float | None = None, end: float | None = None) -> np.ndarray:
    """The source frames a strategy keeps from the window ``[start, end)`` seconds (the whole
    video where not given)."""
    a = 0 if start is None else max(0, min(p.frames - 1, math.floor(start * p.fps)))
    b = p.frames if end is None else max(a + 1, min(p.frames, math.ceil(end * p.fps)))
    if sampling == "segments":
        return (a + np.floor((np.arange(frames) + 0.5) * (b - a) / frames)).astype(np.int64)
    if sampling == "dense":
        return np.arange(a, b, stride, dtype=np.int64)
    times = np.arange(a / p.fps, b / p.fps - 1e-9, 1.0 / fps)
    return np.clip(np.round(times * p.fps).astype(np.int64), a, b - 1)


def resized_shape(height: int, width: int, short_side: int) -> tuple[int, int]:
    """(height, width) with the short side ``short_side`` and the aspect ratio kept."""
    if height <= width:
        return short_side, max(short_side, round(width * short_side / height))
    return max(short_side, round(height * short_side / width)), short_side


def resize(frames: np.ndarray, short_side: int) -> np.ndarray:
    """uint8 (N, H, W, 3) -> uint8 (N, h, w, 3) with the short side ``short_side`` (bilinear with
    antialiasing, as torchvision's Resize on tensors)."""
    import torch
    import torch.nn.functional as F

    h, w = resized_shape(frames.shape[1], frames.shape[2], short_side)
    if (h, w) == frames.shape[1:3]:
        return np.ascontiguousarray(frames)
    x = torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).float()
    y = F.interpolate(x, size=(h, w), mode="bilinear", antialias=True, align_corners=False)
    return y.round_().clamp_(0, 255).to(torch.uint8).permute(0, 2, 3, 1).contiguous().numpy()


def read_frames(path: Path, p: Probe, indices: np.ndarray, short_side: int) -> np.ndarray:
    """The frames at ``indices`` (source frame numbers), resized: uint8 (len, h, w, 3)."""
    h, w = resized_shape(p.height, p.width, short_side)
    out = np.empty((len(indices), h, w, 3), dtype=np.uint8)
    try:
        if p.reader == "decord":
            reader = io.load_decord().VideoReader(str(path), num_threads=1)
            for i in range(0, len(indices), CHUNK):
                part = indices[i: i + CHUNK]
                out[i: i + len(part)] = resize(reader.get_batch(part.tolist()).asnumpy(), short_side)
        else:
            _pyav_frames(path, indices, short_side, out)
    except DataError:
        raise
    except Exception as exc:  # a stream that probed fine but fails later (a truncated file)
        raise DataError(f"corrupt video file {path}: {_first_line(exc)}") from exc
    return out


def _pyav_frames(path: Path, indices: np.ndarray, short_side: int, out: np.ndarray) -> None:
    """Decode in order, keeping the frames asked for (an index may repeat)."""
    import av

    wanted: dict[int, list[int]] = {}
    for pos, idx in enumerate(indices.tolist()):
        wanted.setdefault(idx, []).append(pos)
    last, pending = max(wanted), []
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        for n, frame in enumerate(container.decode(stream)):
            if n in wanted:
                pending.append((n, frame.to_ndarray(format="rgb24")))
            if len(pending) == CHUNK or (n == last and pending):
                _flush(pending, wanted, short_side, out)
                pending = []
            if n >= last:
                break
    if pending:
        _flush(pending, wanted, short_side, out)
    if last >= n + 1:
        raise DataError(f"corrupt video file {path}: {n + 1} frames decoded, frame {last} asked for")


def _flush(pending: list, wanted: dict[int, list[int]], short_side: int, out: np.ndarray) -> None:
    frames = resize(np.stack([f for _, f in pending]), short_side)
    for (n, _), frame in zip(pending, frames):
        for pos in wanted[n]:
            out[pos] = frame


def sidecar_name(path: Path) -> Path:
    """Where a video's audio sidecar would be: the ``.wav`` beside it, of the same stem."""
    return path.with_suffix(".wav")


def sidecar(path: Path) -> Path | None:
    """The ``.wav`` beside a video, if there is one: it is read instead of the container's audio."""
    wav = sidecar_name(path)
    return wav if wav.is_file() and wav != path else None


def read_audio(path: Path, rate: int, start: float | None = None, end: float | None = None) -> np.ndarray:
    """Mono float32 samples at ``rate`` of the window ``[start, end)`` seconds of the file's first
    audio stream (a ``.wav`` sidecar first, if there is one); DataError naming the file if it has
    no audio or cannot be decoded."""
    source = sidecar(path) or path
    try:
        import av

        with av.open(str(source)) as container:
            if not container.streams.audio:
                raise MissingAudio(f"video {path} has no audio track (and no .wav beside it)")
            stream = container.streams.audio[0]
            resampler = av.AudioResampler(format="flt", layout="mono", rate=rate)
            chunks, have, need = [], 0, None if end is None else round(end * rate)
            for frame in container.decode(stream):
                for out in resampler.resample(frame):
                    chunks.append(out.to_ndarray().reshape(-1))
                    have += len(chunks[-1])
                if need is not None and have >= need:  # the window is read: the rest is not decoded
                    break
            else:
                for out in resampler.resample(None):  # the resampler's buffered tail
                    chunks.append(out.to_ndarray().reshape(-1))
    except DataError:
        raise
    except Exception as exc:  # av.error.* for a damaged stream
        raise DataError(f"corrupt audio in {source}: {_first_line(exc)}") from exc
    samples = np.concatenate(chunks).astype(np.float32) if chunks else np.zeros(0, np.float32)
    a = 0 if start is None else max(0, round(start * rate))
    b = len(samples) if end is None else max(a, round(end * rate))
    return samples[a:b]
