"""``synth``: the embedded synthetic multimodal benchmark .

Videos are procedures drawn from a small grammar: each procedure (recipe) is a fixed ordered list of
actions, an action is verb x object, and a video follows its recipe with a little grammar noise
(random skips and insertions), so past steps predict the next. Each step is rendered as a coloured
shape doing the verb (slide, lift, spin, grow, blink) over static clutter, pixel noise and sometimes
a jittering distractor shape. The audio track carries the action (object -> pitch, verb -> pitch
contour or rhythm), but a known fraction of steps carry irrelevant sound instead, as in
unconstrained video. Flow holds the exact motion field, pose the shape's keypoints, and every step
has a sentence naming it with varied phrasing.

Everything is deterministic from (options, video index): files are regenerated one video at a time
when missing or when their SHA-256 does not match the manifest, so the same options give
byte-identical files on every machine with the same encoder.
"""

from __future__ import annotations

import logging
import math
import os
import shutil
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

from xbench.data import decoded, io
from xbench.data.flow import pool_flow
from xbench.data.io import data_home  # noqa: F401  (its old home: imported from here by users)
from xbench.errors import DataError, XbenchError
from xbench.hashing import stable_hash

GENERATOR_VERSION = 2
SPLITS = ("train", "val", "test", "teacher")
#: videos per split for each size (the teacher split trains teachers, so a student's soft targets
#: come from a teacher that never saw those clips)
SIZES = {
    "tiny": {"train": 12, "val": 6, "test": 6, "teacher": 10},
    "small": {"train": 700, "val": 150, "test": 150, "teacher": 350},
}
AUDIO_RATE = 16000
#: the exact motion fields are stored averaged over FLOW_POOL x FLOW_POOL pixel blocks
FLOW_POOL = 2

VERBS = ("slide", "lift", "spin", "grow", "blink")
VERB_PHRASES = {
    "slide": ("slide {o} to the right", "push {o} right", "move {o} rightwards", "{o} slides right"),
    "lift": ("lift {o}", "raise {o} up", "move {o} upwards", "{o} rises"),
    "spin": ("spin {o}", "rotate {o}", "turn {o} around", "{o} spins in place"),
    "grow": ("grow {o}", "enlarge {o}", "make {o} bigger", "{o} grows"),
    "blink": ("blink {o}", "flash {o}", "make {o} flicker", "{o} blinks"),
}
SHAPES = ("ball", "box", "triangle", "cross")
COLOURS = {"red": (220, 40, 40), "green": (40, 200, 60), "blue": (50, 80, 230),
           "yellow": (230, 210, 40), "magenta": (210, 50, 200), "cyan": (40, 200, 210)}


#: the most each option that sizes the generated data may be (the small size's values are 24
#: procedures of 5-7 steps, 8 frames of 32 px at 16 fps)
SIZE_LIMITS = {"procedures": 10_000, "steps_min": 64, "steps_max": 64, "frames": 256, "resolution": 512,
               "fps": 120, "clutter": 64}


@dataclass(frozen=True)
class SynthOptions:
    """Knobs of the synthetic benchmark. All but ``label_fraction`` and ``flow_dir`` change the
    generated files."""

    size: Literal["tiny", "small"] = "small"
    seed: int = 0
    frames: int = 8
    resolution: int = 32
    fps: int = 16
    verbs: int = 5
    objects: int = 4
    procedures: int = 24
    steps_min: int = 5
    steps_max: int = 7
    grammar_noise: float = 0.03
    pixel_noise: float = 0.10
    clutter: int = 6
    distractor_rate: float = 0.5
    audio_noise_rate: float = 0.3
    audio_noise_kind: Literal["mixed", "white", "tones", "other"] = "mixed"
    #: fraction of steps during which a second actor performs another action, starting in the
    #: second half of the step and running into what follows (multi-label frames, for detection)
    overlap_rate: float = 0.0
    #: fraction of train clips whose labels the student may use (the rest: distillation only)
    label_fraction: float = 1.0
    #: videos of the teacher split relative to train (None: the size's own, 0.5 for small): a
    #: teacher trained on more data than the student, as AudioSet or Recipe1M teachers are
    teacher_size: float | None = field(default=None, metadata={"omit_default": True})
    #: read flow prepared from the videos (``xbench data flow ROOT --out DIR``: DIR mirrors the
    #: videos' paths with .npy) instead of the generator's exact motion fields, as real data must
    flow_dir: str | None = None
    #: how models read the audio: a log-mel spectrogram, or the waveform itself (wav2vec2, HuBERT)
    audio_input: Literal["log-mel", "waveform"] = field(default="log-mel", metadata={"omit_default": True})

    def __post_init__(self) -> None:
        if not 1 <= self.verbs <= len(VERBS):
            raise ValueError(f"verbs must be in 1..{len(VERBS)}")
        if not 1 <= self.objects <= len(COLOURS):
            raise ValueError(f"objects must be in 1..{len(COLOURS)}")
        if self.resolution < 16 or self.frames < 2 or self.steps_min > self.steps_max:
            raise ValueError("need resolution >= 16, frames >= 2, steps_min <= steps_max")
        if min(self.fps, self.procedures, self.steps_min) < 1 or self.clutter < 0:
            raise ValueError("need fps, procedures, steps_min >= 1 and clutter >= 0")
        for key in ("grammar_noise", "audio_noise_rate", "label_fraction", "distractor_rate",
                    "pixel_noise", "overlap_rate"):
            if not 0.0 <= getattr(self, key) <= 1.0:
                raise ValueError(f"{key} must be in [0, 1]")
        if self.teacher_size is not None and not 0.0 < self.teacher_size <= 20.0:
            raise ValueError("teacher_size must be in (0, 20] (teacher videos per train video)")
        # options that size the generated data are bounded: a typo (procedures=1000000000) is an
        # error at once, not a generation that fills the disk or never ends
        for key, most in SIZE_LIMITS.items():
            if getattr(self, key) > most:
                raise ValueError(f"{key} must be at most {most:,} (it sizes the generated data)")

    def counts(self) -> dict[str, int]:
        """Videos per split."""
        counts = dict(SIZES[self.size])
        if self.teacher_size is not None:
            counts["teacher"] = max(1, round(self.teacher_size * counts["train"]))
        return counts

    @property
    def num_classes(self) -> int:
        return self.verbs * self.objects

    def generation_key(self) -> str:
        params = {k: v for k, v in asdict(self).items() if k not in ("label_fraction", "flow_dir", "audio_input")}
        for key in ("overlap_rate", "teacher_size"):  # unset: the option set before they existed, same key
            if not params[key]:
                del params[key]
        return f"{self.size}-{stable_hash({'v': GENERATOR_VERSION, **params})}"


def object_name(obj: int) -> str:
    colour = list(COLOURS)[obj]
    return f"the {colour} {SHAPES[obj % len(SHAPES)]}"


def class_names(opts: SynthOptions) -> list[str]:
    return [f"{VERBS[v]} {object_name(o)[4:]}" for v in range(opts.verbs) for o in range(opts.objects)]


def recipes(opts: SynthOptions) -> list[list[tuple[int, int]]]:
    """The procedure grammar: each recipe is an ordered list of (verb, object) actions."""
    rng = np.random.default_rng([opts.seed, 7919])
    out = []
    for _ in range(opts.procedures):
        n = int(rng.integers(opts.steps_min, opts.steps_max + 1))
        out.append([(int(rng.integers(opts.verbs)), int(rng.integers(opts.objects))) for _ in range(n)])
    return out


# ----------------------------------------------------------------------------- rendering


def _shape_mask(kind: int, u: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Inside-mask and a darker 'marking' mask (so rotation is visible) in unit shape coords."""
    if kind == 0:  # ball with a stripe
        inside = u * u + v * v < 1.0
        mark = inside & (np.abs(v) < 0.3)
    elif kind == 1:  # box with a corner mark
        inside = np.maximum(np.abs(u), np.abs(v)) < 0.85
        mark = inside & (u > 0.3) & (v > 0.3)
    elif kind == 2:  # triangle with a tip mark
        inside = (v > -0.55) & (np.abs(u) < 0.62 * (1.0 - v))
        mark = inside & (v > 0.45)
    else:  # cross with one marked arm
        inside = ((np.abs(u) < 0.32) & (np.abs(v) < 1.0)) | ((np.abs(v) < 0.32) & (np.abs(u) < 1.0))
        mark = inside & (u > 0.4)
    return inside, mark


def _trajectory(verb: int, n: int, res: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Per-frame centre, angle, scale and visibility of the object doing ``verb``."""
    t = np.arange(n, dtype=np.float64)
    size = rng.uniform(0.14, 0.19) * res
    cx = np.full(n, rng.uniform(0.35, 0.65) * res)
    cy = np.full(n, rng.uniform(0.35, 0.65) * res)
    angle = np.full(n, rng.uniform(0, 2 * math.pi))
    scale = np.full(n, size)
    visible = np.ones(n, dtype=bool)
    speed = rng.uniform(0.035, 0.055) * res
    if VERBS[verb] == "slide":
        cx = rng.uniform(0.2, 0.35) * res + speed * t
    elif VERBS[verb] == "lift":
        cy = rng.uniform(0.65, 0.8) * res - speed * t
    elif VERBS[verb] == "spin":
        angle = angle[0] + rng.choice([-1, 1]) * rng.uniform(0.3, 0.45) * t
    elif VERBS[verb] == "grow":
        scale = size * (0.7 + rng.uniform(0.9, 1.2) * t / max(n - 1, 1))
    elif VERBS[verb] == "blink":
        visible = (np.arange(n) // 2) % 2 == 0
    return {"cx": cx, "cy": cy, "angle": angle, "scale": scale, "visible": visible}


def _draw(img: np.ndarray, kind: int, colour: np.ndarray, cx: float, cy: float, angle: float,
          scale: float, gx: np.ndarray, gy: np.ndarray) -> np.ndarray:
    c, s = math.cos(angle), math.sin(angle)
    dx, dy = gx - cx, gy - cy
    u, v = (c * dx + s * dy) / scale, (-s * dx + c * dy) / scale
    inside, mark = _shape_mask(kind, u, v)
    img[inside] = colour
    img[mark] = colour * 0.45
    return inside


def render_video(opts: SynthOptions, actions: list[tuple[int, int]], rng: np.random.Generator):
    """Frames (N,H,W,3) uint8, flow (N,2,H/2,W/2) f16, pose (N,5,3) f32, segments, audio f32."""
    res, n_step = opts.resolution, opts.frames
    gaps = [int(rng.integers(1, 4)) for _ in range(len(actions) + 1)]
    total = sum(gaps) + n_step * len(actions)
    gy, gx = np.mgrid[0:res, 0:res].astype(np.float64) + 0.5

    # static background: a grey level plus clutter blobs of random colours
    bg = np.full((res, res, 3), rng.uniform(70, 130), dtype=np.float64)
    for _ in range(opts.clutter):
        r = rng.uniform(0.05, 0.15) * res
        x0, y0 = rng.uniform(0, res, 2)
        blob = (gx - x0) ** 2 + (gy - y0) ** 2 < r * r
        bg[blob] = bg[blob] * 0.5 + rng.uniform(40, 200, 3) * 0.5

    frames = np.repeat(bg[None], total, axis=0)
    flow = np.zeros((total, 2, res, res), dtype=np.float64)
    pose = np.zeros((total, 5, 3), dtype=np.float32)
    audio = _noise_floor(total, opts, rng)
    segments = []
    pos = gaps[0]
    colours = np.array(list(COLOURS.values()), dtype=np.float64)
    samples_per_frame = AUDIO_RATE // opts.fps
    for k, (verb, obj) in enumerate(actions):
        traj = _trajectory(verb, n_step, res, rng)
        colour = np.clip(colours[obj] + rng.uniform(-25, 25, 3), 0, 255)
        distractor = None
        if rng.random() < opts.distractor_rate:
            other = int(rng.integers(opts.objects))
            distractor = (other % len(SHAPES), np.clip(colours[other] + rng.uniform(-25, 25, 3), 0, 255),
                          rng.uniform(0.2, 0.8, 2) * res, rng.uniform(0, 2 * math.pi),
                          rng.uniform(0.12, 0.17) * res)
        for i in range(n_step):
            f = pos + i
            if distractor is not None:
                kind_d, col_d, centre, ang, sc = distractor
                jitter = rng.normal(0, 0.02 * res, 2)
                _draw(frames[f], kind_d, col_d, *(centre + jitter), ang, sc, gx, gy)
            if traj["visible"][i]:
                cx, cy, ang, sc = (traj[key][i] for key in ("cx", "cy", "angle", "scale"))
                inside = _draw(frames[f], obj % len(SHAPES), colour, cx, cy, ang, sc, gx, gy)
                # exact motion field of the object's pixels towards the next frame
                j = min(i + 1, n_step - 1)
                dvx, dvy = traj["cx"][j] - cx, traj["cy"][j] - cy
                om = traj["angle"][j] - ang
                gr = traj["scale"][j] / sc - 1.0
                rx, ry = gx - cx, gy - cy
                flow[f, 0][inside] = (dvx - om * ry + gr * rx)[inside]
                flow[f, 1][inside] = (dvy + om * rx + gr * ry)[inside]
                for p, (px, py) in enumerate([(0, 0), (1, 0), (0, 1), (-1, 0), (0, -1)]):
                    c, s = math.cos(ang), math.sin(ang)
                    pose[f, p] = (cx + sc * (c * px - s * py), cy + sc * (s * px + c * py), 1.0)
        relevant = rng.random() >= opts.audio_noise_rate
        a0, a1 = pos * samples_per_frame, (pos + n_step) * samples_per_frame
        audio[a0:a1] += _step_audio(verb, obj, relevant, a1 - a0, opts, rng)
        label = verb * opts.objects + obj
        phrase = str(rng.choice(VERB_PHRASES[VERBS[verb]])).format(o=object_name(obj))
        segments.append(io.Segment(start=pos, end=pos + n_step, label=label, verb=verb, noun=obj,
                                   sentence=phrase, audio_relevant=bool(relevant)))
        pos += n_step + gaps[k + 1]

    overlaps = _overlaps(opts, segments, frames, flow, total, rng, gx, gy) if opts.overlap_rate else []
    frames += rng.normal(0, opts.pixel_noise * 255, frames.shape)
    frames = np.clip(frames, 0, 255).astype(np.uint8)
    flow = pool_flow(flow, FLOW_POOL).astype(np.float16)
    return frames, flow, pose, segments, np.clip(audio, -1, 1).astype(np.float32), overlaps


def _overlaps(opts: SynthOptions, segments: list, frames: np.ndarray, flow: np.ndarray, total: int,
              rng: np.random.Generator, gx: np.ndarray, gy: np.ndarray) -> list:
    """A second actor: during a fraction of the steps another object does another action, starting
    in the second half of the step and lasting a step's length (clipped to the video), drawn over
    the scene with its own motion field. Draws random numbers only when ``overlap_rate`` > 0, so
    the files of the other option sets do not change."""
    n_step, res = opts.frames, opts.resolution
    colours = np.array(list(COLOURS.values()), dtype=np.float64)
    out = []
    for seg in segments:
        if rng.random() >= opts.overlap_rate:
            continue
        verb, obj = int(rng.integers(opts.verbs)), int(rng.integers(opts.objects))
        start = seg.start + int(rng.integers(n_step // 2, n_step))
        end = min(start + n_step, total)
        traj = _trajectory(verb, n_step, res, rng)
        colour = np.clip(colours[obj] + rng.uniform(-25, 25, 3), 0, 255)
        for i in range(end - start):
            if not traj["visible"][i]:
                continue
            f = start + i
            cx, cy, ang, sc = (traj[key][i] for key in ("cx", "cy", "angle", "scale"))
            inside = _draw(frames[f], obj % len(SHAPES), colour, cx, cy, ang, sc, gx, gy)
            j = min(i + 1, n_step - 1)
            dvx, dvy = traj["cx"][j] - cx, traj["cy"][j] - cy
            om, gr = traj["angle"][j] - ang, traj["scale"][j] / sc - 1.0
            rx, ry = gx - cx, gy - cy
            flow[f, 0][inside] = (dvx - om * ry + gr * rx)[inside]
            flow[f, 1][inside] = (dvy + om * rx + gr * ry)[inside]
        phrase = str(rng.choice(VERB_PHRASES[VERBS[verb]])).format(o=object_name(obj))
        out.append(io.Segment(start=start, end=end, label=verb * opts.objects + obj, verb=verb,
                              noun=obj, sentence=phrase, audio_relevant=False))
    return out


def _noise_floor(total_frames: int, opts: SynthOptions, rng: np.random.Generator) -> np.ndarray:
    return rng.normal(0, 0.01, total_frames * (AUDIO_RATE // opts.fps))


def _tone(freq: np.ndarray, n: int) -> np.ndarray:
    return np.sin(2 * math.pi * np.cumsum(freq) / AUDIO_RATE) if np.ndim(freq) else \
        np.sin(2 * math.pi * freq * np.arange(n) / AUDIO_RATE)


def _signature(verb: int, obj: int, n: int) -> np.ndarray:
    """The sound of an action: object -> base pitch, verb -> contour or rhythm."""
    f0 = 300.0 * 1.45 ** obj
    t = np.arange(n) / AUDIO_RATE
    name = VERBS[verb]
    if name == "slide":  # rising chirp
        x = _tone(np.linspace(f0, f0 * 1.6, n), n)
    elif name == "lift":  # falling chirp
        x = _tone(np.linspace(f0 * 1.6, f0, n), n)
    elif name == "spin":  # tremolo
        x = _tone(f0, n) * (0.55 + 0.45 * np.sin(2 * math.pi * 12 * t))
    elif name == "grow":  # steady with harmonics
        x = (_tone(f0, n) + 0.6 * _tone(2 * f0, n) + 0.4 * _tone(3 * f0, n)) / 1.6
    else:  # blink: bursts
        x = _tone(f0, n) * ((t * 8) % 1.0 < 0.5)
    return 0.5 * x


def _step_audio(verb: int, obj: int, relevant: bool, n: int, opts: SynthOptions,
                rng: np.random.Generator) -> np.ndarray:
    if relevant:
        return _signature(verb, obj, n) * rng.uniform(0.6, 1.0) + rng.normal(0, 0.05, n)
    kind = opts.audio_noise_kind
    if kind == "mixed":
        kind = str(rng.choice(["white", "tones", "other"]))
    if kind == "white":
        return rng.normal(0, rng.uniform(0.1, 0.3), n)
    if kind == "tones":  # unrelated sounds: random pitches outside any rhythm
        return 0.4 * _tone(rng.uniform(150, 3000), n) + 0.3 * _tone(rng.uniform(150, 3000), n)
    # another action's sound (a wrong but plausible cue, the hardest kind of noise)
    other = int(rng.integers(opts.verbs * opts.objects - 1))
    other += other >= verb * opts.objects + obj
    return _signature(other // opts.objects, other % opts.objects, n) * rng.uniform(0.6, 1.0)


# ----------------------------------------------------------------------------- files


def _video_id(split: str, index: int) -> str:
    return f"{split}_{index:05d}"


def _files(split: str, vid: str) -> dict[str, str]:
    return {"rgb": f"videos/{split}/{vid}.mp4", "audio": f"audio/{split}/{vid}.wav",
            "flow": f"flow/{split}/{vid}.npy", "pose": f"pose/{split}/{vid}.npy"}


def _actions(opts: SynthOptions, grammar: list, rng: np.random.Generator) -> tuple[int, list]:
    proc = int(rng.integers(len(grammar)))
    actions = []
    for action in grammar[proc]:
        r = rng.random()
        if r < opts.grammar_noise / 2:  # skip this step
            continue
        actions.append(action)
        if r > 1 - opts.grammar_noise / 2:  # insert a random action
            actions.append((int(rng.integers(opts.verbs)), int(rng.integers(opts.objects))))
    return proc, actions or [grammar[proc][0]]


def generate_video(args: tuple[SynthOptions, str, int, str]) -> dict:
    """Generate and write one video's files; returns its annotation record (JSON-able)."""
    opts, split, index, root = args
    rng = np.random.default_rng([opts.seed, SPLITS.index(split), index])
    proc, actions = _actions(opts, recipes(opts), rng)
    frames, flow, pose, segments, audio, overlaps = render_video(opts, actions, rng)
    vid = _video_id(split, index)
    files = _files(split, vid)
    base = Path(root)
    io.write_mp4(base / files["rgb"], frames, opts.fps)
    io.write_wav(base / files["audio"], audio, AUDIO_RATE)
    io.write_array(base / files["flow"], flow)
    io.write_array(base / files["pose"], pose)
    return {"id": vid, "split": split, "procedure": proc, "num_frames": int(frames.shape[0]),
            "fps": float(opts.fps), "files": files, "segments": [asdict(s) for s in segments],
            **({"overlaps": [asdict(s) for s in overlaps]} if overlaps else {})}


class SynthDataset:
    """The generated files of one option set, generated or repaired on first use."""

    modalities = ("rgb", "audio", "flow", "pose", "text")
    #: ``teacher``: the videos a privileged teacher trains on, disjoint from ``train``
    splits = ("train", "val", "test", "teacher")
    #: samples per second of every audio track
    audio_rate = AUDIO_RATE

    def __init__(self, opts: SynthOptions, root: Path | None = None, *, workers: int | None = None,
                 log=None) -> None:
        self.opts = opts
        self.root = (root or io.data_home()) / "synth" / opts.generation_key()
        self.num_classes = opts.num_classes
        self.class_names = class_names(opts)
        self.audio_input = opts.audio_input
        # through the "xbench" logger: the CLI shows it (not under --quiet); a library user
        # configures logging as for any library
        self._log = log or logging.getLogger("xbench.data").info
        self._records: dict[str, list[io.VideoRecord]] = {}
        self._decoded: decoded.DecodeCache | None = None
        #: what opening found wrong and generated again (file -> why), and how many files'
        #: content it hashed (all of them under ``io.verifying``)
        self.repaired: dict[str, str] = {}
        self.verified = 0
        self.ensure(workers)

    # -- generation ------------------------------------------------------------------------
    def ensure(self, workers: int | None = None) -> None:
        """Generate what is missing; regenerate any video whose files do not match the manifest
        (checked by content hash where a file's stat changed, every file under ``io.verifying``)."""
        manifest_path = self.root / "manifest.json"
        manifest = None
        if manifest_path.is_file():
            try:
                manifest = io.read_json(manifest_path)
            except DataError as exc:
                self._log(f"synth: {exc}; regenerating")
        todo: list[tuple[str, int]] = []
        hashes = io.FileHashes(self.root)
        counts = self.opts.counts()
        for split in SPLITS:
            for i in range(counts[split]):
                vid = _video_id(split, i)
                files = _files(split, vid)
                if manifest is None or vid not in manifest["videos"]:
                    todo.append((split, i))
                    continue
                bad = False
                for rel in files.values():  # all of them: each bad one is named
                    try:
                        if hashes.sha256(rel) == manifest["files"].get(rel):
                            continue
                        self.repaired[rel] = "hash mismatch"
                        self._log(f"synth: corrupt file {self.root / rel} (hash mismatch); regenerating it")
                    except (FileNotFoundError, IsADirectoryError):
                        self.repaired[rel] = "missing"
                        self._log(f"synth: missing file {self.root / rel}; regenerating it")
                    bad = True
                if bad:
                    todo.append((split, i))
        stale = manifest is None
        for rel, digest in (manifest or {}).get("annotations", {}).items():
            try:
                if hashes.sha256(rel) != digest:
                    self.repaired[rel] = "hash mismatch"
            except (FileNotFoundError, IsADirectoryError):
                self.repaired[rel] = "missing"
            stale = stale or rel in self.repaired
        hashes.save()
        self.verified = hashes.hashed
        if stale and manifest is not None:
            self._log(f"synth: annotation files in {self.root} are missing or corrupt; rewriting them")
        if todo or stale:
            self._generate(todo, manifest, workers)

    def _generate(self, todo: list[tuple[str, int]], manifest: dict | None, workers: int | None) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        if todo:
            self._log(f"synth: generating {len(todo)} videos in {self.root}")
        jobs = [(self.opts, split, i, str(self.root)) for split, i in todo]
        workers = workers or min(len(jobs), os.cpu_count() or 1, 4)
        if workers > 1 and len(jobs) > 8:
            with ProcessPoolExecutor(workers) as pool:
                fresh = list(pool.map(generate_video, jobs, chunksize=8))
        else:
            fresh = [generate_video(job) for job in jobs]
        records = {} if manifest is None else dict(manifest["videos"])
        files = {} if manifest is None else dict(manifest["files"])
        hashes = io.FileHashes(self.root)
        for rec in fresh:
            records[rec["id"]] = rec
            for rel in rec["files"].values():
                files[rel] = hashes.sha256(rel)
        annotations, counts = {}, self.opts.counts()
        for split in SPLITS:
            videos = [records[_video_id(split, i)] for i in range(counts[split])]
            rel = f"annotations/{split}.json"
            io.write_json(self.root / rel, {
                "classes": self.class_names, "verbs": list(VERBS[: self.opts.verbs]),
                "nouns": [object_name(o)[4:] for o in range(self.opts.objects)], "videos": videos})
            annotations[rel] = hashes.sha256(rel)
        hashes.save()
        # the manifest is written last: an interrupted generation leaves no claim of completeness
        io.write_json(self.root / "manifest.json", {
            "generator_version": GENERATOR_VERSION, "options": asdict(self.opts),
            "videos": records, "files": files, "annotations": annotations})

    @classmethod
    def check(cls, home: Path, opts: SynthOptions | None = None) -> tuple[list[SynthDataset], dict[str, str]]:
        """``xbench data check synth``: every generated option set under ``home/synth`` (or only
        ``opts``'s), each of its files hashed; a file that fails is generated again (``repaired``
        of each set names it). Also: the folders not checked, and why."""
        found: list[tuple[Path, SynthOptions]] = []
        skipped: dict[str, str] = {}
        wanted = [home / "synth" / opts.generation_key() / "manifest.json"] if opts else \
            sorted((home / "synth").glob("*/manifest.json"))
        for path in wanted:
            try:
                o = opts or SynthOptions(**io.read_json(path)["options"])
            except (XbenchError, OSError, TypeError, ValueError, KeyError) as exc:
                skipped[str(path.parent)] = f"its manifest does not read ({' '.join(str(exc).split())[:80]})"
                continue
            if o.generation_key() != path.parent.name:  # another generator version's: not ours to mend
                skipped[str(path.parent)] = "generated by another version of xbench"
            elif not path.is_file():
                skipped[str(path.parent)] = "not generated yet"
            else:
                found.append((path.parent, o))
        with io.verifying():
            return [cls(o, home, log=lambda m: None) for _, o in found], skipped

    def clear(self) -> None:
        """Delete this option set's files (only ever inside its own directory)."""
        if self.root.is_dir() and self.root.parent.name == "synth":
            shutil.rmtree(self.root)

    # -- reading ---------------------------------------------------------------------------
    def videos(self, split: str) -> list[io.VideoRecord]:
        if split not in self._records:
            self._records[split] = io.load_annotations(self.root / f"annotations/{split}.json")
        return self._records[split]

    def read(self, video: io.VideoRecord, modality: str) -> np.ndarray:
        path = self.root / video.files[modality]
        if modality == "rgb":
            if decoded.enabled():  # decoded once, mapped by every later run
                frames = self._decode_cache().frames(f"{video.split}-{video.id}", lambda: io.read_mp4(path))
            else:
                frames = io.read_mp4(path)
            if frames.shape[0] != video.num_frames:
                raise DataError(f"corrupt video file {path}: {frames.shape[0]} frames, "
                                f"annotation says {video.num_frames}")
            return frames
        if modality == "audio":
            return io.read_wav(path)[0]
        if modality == "flow" and self.opts.flow_dir is not None:
            return self._prepared_flow(video)
        return io.read_array(path)

    def _prepared_flow(self, video: io.VideoRecord) -> np.ndarray:
        path = Path(self.opts.flow_dir).expanduser() / Path(video.files["rgb"]).with_suffix(".npy")
        if not path.is_file():
            raise DataError(f"missing flow file {path}: prepare it with "
                            f"'xbench data flow {self.root} --out {self.opts.flow_dir}'")
        flow = io.read_array(path)
        side = self.opts.resolution // FLOW_POOL
        want = (video.num_frames, 2, side, side)
        if flow.shape != want:  # another video's flow, or prepared with another --pool
            raise DataError(f"flow file {path} has shape {flow.shape}, the video needs {want} "
                            f"(--pool {FLOW_POOL})")
        return flow

    def _decode_cache(self) -> decoded.DecodeCache:
        if self._decoded is None:
            # beside the generated data (XBENCH_DATA), keyed by the manifest: new data, new cache
            self._decoded = decoded.DecodeCache(self.root.parent.parent, self.manifest_hash(), log=self._log)
        return self._decoded

    def manifest_hash(self) -> str:
        return io.sha256_file(self.root / "manifest.json")[:16]
