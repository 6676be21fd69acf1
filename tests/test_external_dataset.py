"""A dataset plugin written outside the repository from docs/reference.md alone (the Dataset
contract, public modules only): real mp4 files of mixed resolution and frame rate, made here with
PyAV, run the built-in recognition task with kd, with no change to the core, and pass
``xbench check --plugin``; one that lacks a required part fails the check naming the part."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import wave
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from conftest import make_plugin

#: (width, height, fps) of the videos, cycled: three resolutions, PAL, NTSC and 30 fps
FORMATS = [(64, 48, Fraction(25)), (40, 40, Fraction(30000, 1001)), (52, 36, Fraction(30))]
SPLITS = {"train": 6, "val": 3, "test": 3, "teacher": 6}
CLASSES = 3

PLUGIN = '''
"""A folder of mp4 files with wav sidecars and a CSV list (split,file,label_a,label_b): each video
is two steps, its first half and its second half, labelled label_a and label_b."""

import csv
import dataclasses
import hashlib
import wave
from pathlib import Path

import av
import numpy as np

from xbench import hookimpl
from xbench.contracts import Segment, VideoRecord
from xbench.specs import DatasetSpec

SIDE = 32  # every frame is resized to SIDE x SIDE: the contract wants one size


@dataclasses.dataclass(frozen=True)
class FolderOptions:
    folder: str = {folder!r}


class FolderDataset:
    splits = ("train", "val", "test", "teacher")
    audio_rate = 16000
    num_classes = {classes}
    class_names = [f"class-{{i}}" for i in range({classes})]

    def __init__(self, options, root=None):
        self.root = Path(options.folder)
        self._videos = {{s: [] for s in self.splits}}
        with open(self.root / "list.csv") as f:
            for split, name, a, b in csv.reader(f):
                with av.open(str(self.root / name)) as c:
                    stream = c.streams.video[0]
                    n, fps = stream.frames, float(stream.average_rate)
                half = n // 2
                self._videos[split].append(VideoRecord(
                    id=name, split=split, procedure=0, num_frames=n, fps=fps,
                    files={{"rgb": name, "audio": name[:-4] + ".wav"}},
                    segments=(Segment(0, half, int(a), 0, 0, ""), Segment(half, n, int(b), 0, 0, ""))))
{manifest}
    def videos(self, split):
        return self._videos[split]

    def read(self, video, modality):
        path = self.root / video.files[modality]
        if modality == "audio":
            with wave.open(str(path)) as w:
                pcm = np.frombuffer(w.readframes(w.getnframes()), dtype=np.int16)
            return pcm.astype(np.float32) / 32768
        with av.open(str(path)) as c:
            frames = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
        rgb = np.stack(frames)
        rows = np.linspace(0, rgb.shape[1] - 1, SIDE).round().astype(int)
        cols = np.linspace(0, rgb.shape[2] - 1, SIDE).round().astype(int)
        return np.ascontiguousarray(rgb[:, rows][:, :, cols])


@hookimpl
def xbench_register_datasets(register):
    register(DatasetSpec(name="{name}", description="mp4 folder", factory=FolderDataset,
                         modalities=("rgb", "audio"), options=FolderOptions))
'''

MANIFEST = '''
    def manifest_hash(self):
        h = hashlib.sha256()
        for path in sorted(self.root.rglob("*")):
            if path.is_file():
                h.update(path.name.encode() + path.read_bytes())
        return h.hexdigest()[:16]
'''


def _write_video(path: Path, width: int, height: int, fps: Fraction, label: int, rng) -> int:
    import av

    n = round(float(fps))  # one second
    with av.open(str(path), "w") as c:
        stream = c.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for i in range(n):
            img = rng.integers(0, 40, (height, width, 3), dtype=np.uint8)
            img[..., label] += np.uint8(150 if i < n // 2 else 60)  # a colour cue per step
            for packet in stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                c.mux(packet)
        for packet in stream.encode():
            c.mux(packet)
    with wave.open(str(path.with_suffix(".wav")), "w") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16000)
        t = np.arange(16000) / 16000
        w.writeframes((np.sin(2 * np.pi * 220 * (label + 1) * t) * 8000).astype(np.int16).tobytes())
    return n


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("mp4-folder")
    rng = np.random.default_rng(0)
    rows, k = [], 0
    for split, count in SPLITS.items():
        for i in range(count):
            width, height, fps = FORMATS[k % len(FORMATS)]
            a, b = k % CLASSES, (k + 1) % CLASSES
            name = f"{split}_{i}.mp4"
            _write_video(root / name, width, height, fps, a, rng)
            rows.append(f"{split},{name},{a},{b}")
            k += 1
    (root / "list.csv").write_text("\n".join(rows) + "\n")
    return root


def _env(tmp_path: Path, folder: Path, name: str, manifest: str, resize: bool = True) -> dict[str, str]:
    source = textwrap.dedent(PLUGIN).format(folder=str(folder), classes=CLASSES, name=name, manifest=manifest)
    if not resize:  # frames at each file's own resolution
        source = source.replace("return np.ascontiguousarray(rgb[:, rows][:, :, cols])", "return rgb")
    site = make_plugin(tmp_path / "site", name.replace("-", "_"), source)
    return dict(os.environ, PYTHONPATH=str(site), XBENCH_HOME=str(tmp_path / "home"))


def _xbench(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "xbench.cli", *args], capture_output=True, text=True, env=env,
                          cwd=cwd, timeout=600, check=False)


def test_the_videos_really_differ_in_resolution_and_frame_rate(folder):
    import av

    seen = set()
    for path in sorted(folder.glob("*.mp4"))[:3]:
        with av.open(str(path)) as c:
            s = c.streams.video[0]
            seen.add((s.width, s.height, round(float(s.average_rate), 2), s.frames))
    assert seen == {(64, 48, 25.0, 25), (40, 40, 29.97, 30), (52, 36, 30.0, 30)}


def test_a_dataset_plugin_from_the_docs_runs_kd_on_recognition_and_passes_the_check(folder, tmp_path):
    env = _env(tmp_path, folder, "mp4-folder", MANIFEST)
    run = _xbench(["run", "--method", "kd", "--task", "recognition", "--dataset", "mp4-folder",
                   "--budget", "smoke", "--quiet"], env, tmp_path)
    assert run.returncode == 0, run.stderr[-2000:]
    lines = run.stdout.splitlines()
    assert lines[0] == ("kd on recognition (mp4-folder), tier smoke, test metrics of the val-selected "
                        "student; main metric: top1")
    assert lines[3].split()[6:8] == ["30", "360"]  # 30 student steps of 12 clips (6 videos x 2 steps)
    check = _xbench(["check", "--plugin", "mp4_folder"], env, tmp_path)
    assert check.returncode == 0, check.stdout[-3000:]
    assert [line[:40].rstrip() for line in check.stdout.splitlines()] == [
        "PASS  registers cheaply, offline", "PASS  builds", "PASS  satisfies the Dataset contract",
        "PASS  annotations within its classes", "PASS  frames of one size and dtype", "PASS  splits disjoint",
        "PASS  manifest hash follows its files", "7 passed, 0 failed"]


def test_a_dataset_plugin_without_a_manifest_hash_fails_the_check_and_the_run_naming_it(folder, tmp_path):
    env = _env(tmp_path, folder, "no-manifest", "")
    check = _xbench(["check", "--plugin", "no_manifest"], env, tmp_path)
    assert check.returncode == 1
    assert ("FAIL  satisfies the Dataset contract     dataset 'no-manifest': dataset 'no-manifest' lacks "
            "manifest_hash (see xbench.contracts.Dataset)") in check.stdout.splitlines()
    run = _xbench(["run", "--method", "kd", "--task", "recognition", "--dataset", "no-manifest",
                   "--budget", "smoke", "--quiet"], env, tmp_path)
    assert run.returncode == 2
    assert run.stderr == ("xbench: error: plugin 'no_manifest': dataset 'no-manifest' lacks manifest_hash "
                          "(see xbench.contracts.Dataset)\n")


def test_a_dataset_plugin_with_frames_of_several_sizes_fails_the_frame_check(folder, tmp_path):
    env = _env(tmp_path, folder, "native-size", MANIFEST, resize=False)
    check = _xbench(["check", "--plugin", "native_size"], env, tmp_path)
    assert check.returncode == 1
    assert ("FAIL  frames of one size and dtype       dataset 'native-size': frames of different sizes: "
            "48x64 ('train_0.mp4'), 40x40 ('train_1.mp4'), 36x52 ('train_2.mp4'); resize them to one size in "
            "read()") in check.stdout.splitlines()
