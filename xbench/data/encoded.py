"""Real encoded video made on the spot with PyAV: trees of class folders for the tests, the
benchmarks and a first try of the ``folder`` and ``list`` datasets without a download.

Each class has its own colour and direction of motion, and its own tone in the audio track, so a
student and an audio teacher can both learn it. Codecs and containers as real datasets have
them: H.264 + AAC in mp4, MPEG-4 part 2 in avi, VP9 + Opus in webm, AV1 in mp4.
"""

from __future__ import annotations

import json
from fractions import Fraction
from pathlib import Path

import numpy as np

#: container -> (video codec, audio codec)
FORMATS = {"mp4": ("libx264", "aac"), "avi": ("mpeg4", "mp3"), "webm": ("libvpx-vp9", "libopus"),
           "av1": ("libsvtav1", "aac")}


def write_video(path: Path, frames: np.ndarray, fps: float, fmt: str = "mp4", audio: np.ndarray | None = None,
                rate: int = 16000) -> None:
    """uint8 RGB frames (N, H, W, 3), and optionally mono float audio at ``rate``, into one file."""
    import av

    vcodec, acodec = FORMATS[fmt]
    path.parent.mkdir(parents=True, exist_ok=True)
    container_fmt = "mp4" if fmt == "av1" else fmt
    fr = Fraction(fps).limit_denominator(1001)
    with av.open(str(path), "w", format=container_fmt) as c:
        s = c.add_stream(vcodec, rate=fr)
        s.height, s.width, s.pix_fmt = frames.shape[1], frames.shape[2], "yuv420p"
        s.codec_context.thread_count = 1
        if fmt == "av1":
            s.options = {"svtav1-params": "lp=1", "preset": "12"}
        elif fmt == "mp4":
            s.options = {"preset": "veryfast"}
        a = None
        if audio is not None:
            a_rate = 48000 if acodec == "libopus" else 44100 if acodec == "mp3" else rate
            a = c.add_stream(acodec, rate=a_rate)
            audio = _resample(audio, rate, a_rate)
        for frame in frames:
            for packet in s.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                c.mux(packet)
        for packet in s.encode():
            c.mux(packet)
        if a is not None:
            size = a.codec_context.frame_size or 1024
            for k in range(0, len(audio), size):
                af = av.AudioFrame.from_ndarray(audio[None, k: k + size].astype(np.float32), format="flt",
                                                layout="mono")
                af.sample_rate = a.rate
                for packet in a.encode(af):
                    c.mux(packet)
            for packet in a.encode():
                c.mux(packet)


def _resample(x: np.ndarray, rate: int, to: int) -> np.ndarray:
    n = round(len(x) * to / rate)
    return np.interp(np.arange(n) * rate / to, np.arange(len(x)), x).astype(np.float32)


def clip(label: int, classes: int, frames: int, height: int, width: int, seed: int) -> np.ndarray:
    """A clip of class ``label``: a square of the class's colour moving in the class's direction
    over a noisy background."""
    rng = np.random.default_rng(seed)
    hue = np.array([255 * (label % 3 == 0), 255 * (label % 3 == 1), 255 * (label % 3 == 2)])
    angle = 2 * np.pi * label / classes
    side = max(4, min(height, width) // 4)
    # coarse noise (8x8-pixel blocks): a textured background that encodes fast and small
    coarse = rng.integers(0, 60, (frames, -(-height // 8), -(-width // 8), 3), dtype=np.uint8)
    out = np.ascontiguousarray(coarse.repeat(8, axis=1).repeat(8, axis=2)[:, :height, :width])
    y0, x0 = rng.uniform(0.3, 0.7) * (height - side), rng.uniform(0.3, 0.7) * (width - side)
    for t in range(frames):
        step = 0.6 * t / max(frames - 1, 1)
        y = int(np.clip(y0 + np.sin(angle) * step * height * 0.5, 0, height - side))
        x = int(np.clip(x0 + np.cos(angle) * step * width * 0.5, 0, width - side))
        out[t, y: y + side, x: x + side] = hue
    return out


def tone(label: int, seconds: float, rate: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed + 7)
    t = np.arange(int(seconds * rate)) / rate
    return (0.4 * np.sin(2 * np.pi * (300 + 150 * label) * t) + 0.05 * rng.standard_normal(len(t))).astype(np.float32)


def class_clip(path: Path, label: int, classes: int, k: int, frames: int, fps: float, fmt: str = "mp4",
               size: tuple[int, int] = (48, 64), audio: bool = True, rate: int = 16000) -> None:
    """Clip ``k`` (its seed) of class ``label`` of ``classes``, with the class's tone unless not
    ``audio``, into ``path``."""
    sound = tone(label, frames / fps, rate, k) if audio else None
    write_video(path, clip(label, classes, frames, *size, k), fps, fmt, sound, rate)


def folder_tree(root: Path, classes: int = 3, per_class: int = 4, frames: int = 16,
                sizes: tuple[tuple[int, int], ...] = ((48, 64), (36, 48)), rates: tuple[float, ...] = (25.0, 30000 / 1001),
                formats: tuple[str, ...] = ("mp4",), audio: bool = True, rate: int = 16000,
                splits: bool = False) -> list[Path]:
    """``root/<class>/<video>`` (``root/<split>/<class>/...`` with ``splits``) of real encoded
    clips cycling through ``sizes``, frame ``rates`` and ``formats``; returns the files."""
    out = []
    for label in range(classes):
        for i in range(per_class):
            k = label * per_class + i
            h, w = sizes[k % len(sizes)]
            fps, fmt = rates[k % len(rates)], formats[k % len(formats)]
            split = ("train", "train", "val", "test")[i % 4] if splits else None
            ext = "mp4" if fmt == "av1" else fmt
            path = root / (split or "") / f"class{label}" / f"c{label}_g{i:02d}_{k:03d}.{ext}"
            class_clip(path, label, classes, k, frames, fps, fmt, (h, w), audio, rate)
            out.append(path)
    return out


def ucf101_tree(root: Path, classes: list[str], filmed: list[str] | None = None, groups: int = 4, clips: int = 1,
                frames: int = 12, test_groups: int = 1, mute: tuple[str, ...] = ()) -> None:
    """UCF101's layout and split files with real MPEG-4 part 2 AVI clips (as UCF101 ships):
    ``UCF-101/<Class>/v_<Class>_g<GG>_c<CC>.avi`` and ``ucfTrainTestlist/`` (classInd.txt naming
    ``classes``; three splits, split N testing other groups, as the official lists keep groups
    apart). Only the classes in ``filmed`` (default: all) have videos; those in ``mute`` have no
    audio track, as many UCF101 classes have none."""
    lists = root / "ucfTrainTestlist"
    lists.mkdir(parents=True, exist_ok=True)
    (lists / "classInd.txt").write_text("".join(f"{i + 1} {c}\r\n" for i, c in enumerate(classes)))
    names = []
    for label, cls in enumerate(classes):
        if filmed is not None and cls not in filmed:
            continue
        for g in range(1, groups + 1):
            for c in range(1, clips + 1):
                rel = f"{cls}/v_{cls}_g{g:02d}_c{c:02d}.avi"
                k = len(names)
                class_clip(root / "UCF-101" / rel, label, len(classes), k, frames, 25.0, "avi", audio=cls not in mute)
                names.append((label, g, rel))
    for split in (1, 2, 3):
        test = {(split - 1) * test_groups + t + 1 for t in range(test_groups)}
        (lists / f"trainlist0{split}.txt").write_text(
            "".join(f"{rel} {label + 1}\r\n" for label, g, rel in names if g not in test))
        (lists / f"testlist0{split}.txt").write_text("".join(f"{rel}\r\n" for _, g, rel in names if g in test))


def hmdb51_tree(root: Path, classes: list[str], videos: int = 4, frames: int = 12) -> None:
    """HMDB51's layout and split files with real MPEG-4 part 2 AVI clips (as HMDB51 ships):
    ``hmdb51/<class>/<title>_<class>_<tags>_<n>.avi``, two clips per source title, and
    ``testTrainMulti_7030_splits/<class>_test_split<N>.txt`` (1 train, 2 test, 0 unused; each split
    tests another title and leaves the next one unused, keeping a title's clips together)."""
    lists = root / "testTrainMulti_7030_splits"
    lists.mkdir(parents=True, exist_ok=True)
    titles = (videos + 1) // 2
    for label, cls in enumerate(classes):
        files = [(i // 2, f"Movie_{i // 2}_{cls}_f_cm_np1_fr_med_{i % 2}.avi") for i in range(videos)]
        for i, (_, name) in enumerate(files):
            k = label * videos + i
            class_clip(root / "hmdb51" / cls / name, label, len(classes), k, frames, 30.0, "avi")
        for split in (1, 2, 3):
            test, unused = (split - 1) % titles, split % titles if titles > 2 else -1
            marks = {t: "2" if t == test else "0" if t == unused else "1" for t in range(titles)}
            (lists / f"{cls}_test_split{split}.txt").write_text("".join(f"{n} {marks[t]} \n" for t, n in files))


def kinetics_tree(root: Path, classes: list[str], per_class: int = 3, frames: int = 12, crawler: bool = False,
                  missing: int = 1) -> list[str]:
    """Kinetics' annotation CSVs (``annotations/{train,val}.csv``: label,youtube_id,time_start,
    time_end,split,is_cc) and real H.264 + AAC mp4 clips (as YouTube serves them) named
    ``<youtube_id>_<start:06d>_<end:06d>.mp4``: flat per split as the CVDF mirror unpacks
    (``train/``, ``val/``), or under ``<split>/<label>/`` as the ActivityNet crawler writes with
    ``crawler``. Each split lists ``missing`` clips more whose video is gone, as every copy of
    Kinetics has; returns their stems."""
    (root / "annotations").mkdir(parents=True, exist_ok=True)
    gone = []
    for split, n in (("train", per_class), ("val", max(1, per_class // 2))):
        rows = ["label,youtube_id,time_start,time_end,split,is_cc"]
        for label, cls in enumerate(classes):
            for i in range(n + (missing if label == 0 else 0)):
                k = len(rows)
                yid = f"{split[:2]}{label:03d}{i:02d}x{k:03d}"[:11].ljust(11, "_")
                start = 10 * i + 3
                stem = f"{yid}_{start:06d}_{start + 10:06d}"
                rows.append(f'"{cls}",{yid},{start},{start + 10},{split},0')
                if i >= n:  # listed, but taken down from YouTube
                    gone.append(stem)
                    continue
                folder = root / split / (cls if crawler else "")
                class_clip(folder / f"{stem}.mp4", label, len(classes), k, frames, 25.0)
        (root / "annotations" / f"{split}.csv").write_text("\n".join(rows) + "\n")
    return gone


def untrimmed_video(path: Path, labels: list[int], classes: int, seconds: float, fps: float, seed: int,
                    size: tuple[int, int] = (36, 48), rate: int = 16000) -> list[tuple[int, float, float]]:
    """One video of consecutive actions (each ``seconds`` long: its class's clip and tone), H.264 +
    AAC in mp4; returns each action's (label, start s, end s)."""
    n = max(2, round(seconds * fps))
    frames = np.concatenate([clip(lab, classes, n, *size, seed + k) for k, lab in enumerate(labels)])
    sound = np.concatenate([tone(lab, n / fps, rate, seed + k) for k, lab in enumerate(labels)])
    write_video(path, frames, fps, "mp4", sound, rate)
    return [(lab, k * n / fps, (k + 1) * n / fps) for k, lab in enumerate(labels)]


def _routine(video: int, actions: int, classes: int) -> list[int]:
    """A kitchen routine: the classes in a fixed cycle from a video's own start (what comes next
    follows from what is seen now, so anticipation can be learnt)."""
    return [(video + k) % classes for k in range(actions)]


#: (verb, noun, name) of the fixture actions; verbs and nouns as EPIC-KITCHENS numbers them
KITCHEN_ACTIONS = [(0, 1, "take_pan"), (1, 10, "put_fridge"), (2, 8, "open_cupboard"), (3, 4, "wash_plate")]


def epic55_tree(root: Path, videos: int = 6, actions: int = 6, seconds: float = 1.5, fps: float = 60000 / 1001,
                validation: int = 2) -> None:
    """EPIC-KITCHENS-55's videos (``videos/train/P01/P01_01.MP4``, H.264 at 59.94 fps as recorded)
    and RULSTM's ek55 csv files (frames counted at 30 fps): ``validation`` videos in
    validation.csv, the rest in training.csv; many-shot lists naming the first two verbs and the
    third noun."""
    ek = root / "ek55"
    ek.mkdir(parents=True, exist_ok=True)
    table = ["id,action,verb,noun"] + [f"{i}, {name},{v},{n}" for i, (v, n, name) in enumerate(KITCHEN_ACTIONS)]
    (ek / "actions.csv").write_text("\n".join(table) + "\n")
    (ek / "EPIC_many_shot_verbs.csv").write_text("verb_class,verb\n0,take\n1,put\n")
    (ek / "EPIC_many_shot_nouns.csv").write_text("noun_class,noun\n8,cupboard\n")
    rows: dict[str, list[str]] = {"training": [], "validation": []}
    ident = 0
    for k in range(videos):
        name = f"P{k // 2 + 1:02d}_{k % 2 + 1:02d}"
        path = root / "videos" / "train" / name[:3] / f"{name}.MP4"
        labels = _routine(k, actions, len(KITCHEN_ACTIONS))
        split = "validation" if k >= videos - validation else "training"
        for lab, start, end in untrimmed_video(path, labels, len(KITCHEN_ACTIONS), seconds, fps, seed=10 * k):
            v, n, _ = KITCHEN_ACTIONS[lab]
            rows[split].append(f"{ident:05d}, {name}, {round(start * 30):010d}, {round(end * 30) - 1:010d}, "
                               f"{v:03d}, {n:03d}, {lab:04d}")
            ident += 1
    for split, lines in rows.items():
        (ek / f"{split}.csv").write_text("\n".join(lines) + "\n")
        videos_of = sorted({ln.split(", ")[1] for ln in lines})
        (ek / f"{split}_videos.csv").write_text("\n".join(videos_of) + "\n")


def egtea_tree(root: Path, videos: int = 4, actions: int = 8, seconds: float = 1.5, fps: float = 24.0) -> None:
    """EGTEA Gaze+'s full videos (``videos/<video>.mp4``, H.264 at 24 fps) and its
    ``action_annotation`` files: action_idx.txt (1-based), and three train/test splits, each
    testing every fourth action of every video (another one per split), as the official splits
    interleave train and test actions within a video."""
    ann = root / "action_annotation"
    ann.mkdir(parents=True, exist_ok=True)
    (ann / "action_idx.txt").write_text("".join(f"{name[0].upper()}{name[1:]} {i + 1}\n"
                                                for i, (_, _, name) in enumerate(KITCHEN_ACTIONS)))
    (ann / "verb_idx.txt").write_text("Take 1\nPut 2\nOpen 3\nWash 4\n")
    lines: list[tuple[int, str]] = []
    for k in range(videos):
        video = f"P{k + 1:02d}-R0{k % 3 + 1}-PastaSalad"
        labels = _routine(k, actions, len(KITCHEN_ACTIONS))
        acts = untrimmed_video(root / "videos" / f"{video}.mp4", labels, len(KITCHEN_ACTIONS), seconds, fps, seed=7 * k)
        for j, (lab, start, end) in enumerate(acts):
            v, n, _ = KITCHEN_ACTIONS[lab]
            clip_name = (f"{video}-{round(start * 1000)}-{round(end * 1000)}-F{round(start * fps):06d}-"
                         f"F{round(end * fps) - 1:06d}")
            lines.append((j, f"{clip_name} {lab + 1} {v + 1} {n + 1}\n"))
    for split in (1, 2, 3):
        (ann / f"train_split{split}.txt").write_text("".join(ln for j, ln in lines if j % 4 != split))
        (ann / f"test_split{split}.txt").write_text("".join(ln for j, ln in lines if j % 4 == split))


def charades_tree(root: Path, classes: int = 4, train: int = 6, test: int = 3, actions: int = 4, seconds: float = 1.0,
                  fps: float = 24.0) -> None:
    """Charades' layout (``Charades/`` with Charades_v1_{train,test}.csv and
    Charades_v1_classes.txt; ``Charades_v1_480/<id>.mp4``, H.264 + AAC): each video a routine of
    ``actions`` consecutive actions and one more spanning its first two (every frame labelled
    with all the actions under it); subjects of two videos each."""
    ann = root / "Charades"
    ann.mkdir(parents=True, exist_ok=True)
    (ann / "Charades_v1_classes.txt").write_text("".join(f"c{c:03d} Action number {c}\n" for c in range(classes)))
    head = "id,subject,scene,quality,relevance,verified,script,objects,descriptions,actions,length"
    rows: dict[str, list[str]] = {"train": [head], "test": [head]}
    for k in range(train + test):
        vid = f"{k:02d}CH{k * 7 % 10}X"
        acts = untrimmed_video(root / "Charades_v1_480" / f"{vid}.mp4", _routine(k, actions, classes), classes,
                               seconds, fps, seed=11 * k)
        spans = [*acts, ((acts[0][0] + 1) % classes, acts[0][1], acts[1][2])]
        field = ";".join(f"c{c:03d} {a:.2f} {b:.2f}" for c, a, b in spans)
        split = "train" if k < train else "test"
        rows[split].append(f'{vid},S{k // 2:03d},Kitchen,6,7,Yes,"A person cooks.",pan,"A person cooks.",'
                           f'"{field}",{acts[-1][2]:.2f}')
    for split, lines in rows.items():
        (ann / f"Charades_v1_{split}.csv").write_text("\n".join(lines) + "\n")


def tsu_tree(root: Path, videos: int = 8, actions: int = 4, seconds: float = 1.5, fps: float = 20.0,
             classes: int = 4) -> None:
    """Toyota Smarthome Untrimmed: ``videos/P<NN>T<TT>C<CC>.mp4`` (H.264 + AAC at 20 fps, 4 subjects
    by 2 cameras), ``Action_list`` and the pipeline's ``smarthome_{CS,CV}_51.json`` (times in
    frames of ``duration``): CS tests subject P04, CV tests camera C02."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "Action_list").write_text("".join(f"{i}\t{name}\n" for i, name in enumerate(
        ["Enter", "Walk", "Make_coffee", "Get_water", *[f"Action_{i}" for i in range(4, 51)]])))
    table: dict[str, dict[str, dict]] = {"CS": {}, "CV": {}}
    for k in range(videos):
        subject, camera = k // 2 + 1, k % 2 + 1
        video = f"P{subject:02d}T01C{camera:02d}"
        acts = untrimmed_video(root / "videos" / f"{video}.mp4", _routine(k, actions, classes), classes, seconds, fps,
                               seed=13 * k)
        frames = [[c, round(a * fps), round(b * fps)] for c, a, b in acts]
        for split, test in (("CS", subject == videos // 2), ("CV", camera == 2)):
            table[split][video] = {"subset": "testing" if test else "training", "duration": frames[-1][2],
                                   "actions": frames}
    for split, data in table.items():
        (root / f"smarthome_{split}_51.json").write_text(json.dumps(data))


#: the fixture recipes' step sentences, one per class (first word: the imperative verb)
TASTY_STEPS = ["Add the flour to the bowl.", "Stir the batter until smooth.", "Pour the batter into the pan.",
               "Bake until golden brown."]


def tasty_tree(root: Path, recipes: int = 8, steps: int = 5, seconds: float = 1.2, fps: float = 30.0,
               test: int = 2) -> None:
    """Tasty Videos as its loader reads it: ``<recipe>/recipe.xml`` (the step sentences),
    ``<recipe>/csvalignment.dat`` (each step's "start,end" in units of 5 frames at 30 fps; a last
    "Enjoy!" step not filmed: "-1,-1"), ``<recipe>/<recipe>.mp4`` (H.264 + AAC), and the split
    lists TRAIN_4022.txt and TEST_4022.txt (the last ``test`` recipes)."""
    names = []
    for k in range(recipes):
        recipe = f"recipe_{k:02d}_cake"
        folder = root / recipe
        labels = _routine(k, steps, len(TASTY_STEPS))
        acts = untrimmed_video(folder / f"{recipe}.mp4", labels, len(TASTY_STEPS), seconds, fps, seed=17 * k)
        sentences = [TASTY_STEPS[lab] for lab in labels] + ["Enjoy!"]
        (folder / "recipe.xml").write_text(
            "<recipe><title>Cake</title><ingredients><ingredient>1 cup flour</ingredient></ingredients>"
            "<steps_updated>" + "".join(f"<steps_updated>{t}</steps_updated>" for t in sentences)
            + "</steps_updated></recipe>\n")
        units = [f"{round(a * fps / 5)},{round(b * fps / 5) - 1}" for _, a, b in acts] + ["-1,-1"]
        (folder / "csvalignment.dat").write_text("\n".join(units) + "\n")
        names.append(recipe)
    (root / "TRAIN_4022.txt").write_text("\n".join(names[: recipes - test]) + "\n")
    (root / "TEST_4022.txt").write_text("\n".join(names[recipes - test:]) + "\n")
