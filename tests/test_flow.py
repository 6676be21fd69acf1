"""Optical flow prepared from videos (xbench data flow) and read by a dataset instead of the
generator's exact motion fields."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from xbench.cli import main
from xbench.data import encoded, io
from xbench.data.flow import FarnebackOptions, optical_flow
from xbench.data.synth import SynthDataset, SynthOptions
from xbench.errors import DataError


def _texture(size: int, rng: np.random.Generator) -> np.ndarray:
    """A smooth random texture: noise blurred by a separable box filter, periodic (np.roll)."""
    img = rng.uniform(0, 255, (size, size))
    for axis in (0, 1):
        img = sum(np.roll(img, k, axis=axis) for k in range(-3, 4)) / 7
    return img


def test_farneback_recovers_a_known_translation():
    rng = np.random.default_rng(0)
    base = _texture(64, rng)
    # the scene moves 2 px right and 1 px down per frame
    frames = np.stack([np.roll(base, (t, 2 * t), axis=(0, 1)) for t in range(4)])
    frames = np.repeat(frames[..., None], 3, axis=-1).astype(np.uint8)
    flow = optical_flow(frames, pool=4)
    assert flow.shape == (4, 2, 16, 16) and flow.dtype == np.float16
    inner = flow[:3, :, 4:12, 4:12].astype(np.float32)  # away from the wrap-around border
    np.testing.assert_allclose(inner[:, 0].mean(), 2.0, atol=0.1)  # x first, in source pixels
    np.testing.assert_allclose(inner[:, 1].mean(), 1.0, atol=0.1)
    assert np.abs(inner[:, 0] - 2.0).max() < 0.5 and np.abs(inner[:, 1] - 1.0).max() < 0.5
    assert not flow[3].any()  # the last frame has no successor


def test_prepared_flow_points_where_the_generators_field_moves(data_root):
    ds = SynthDataset(SynthOptions(size="tiny"), data_root, log=lambda m: None)
    cosines = []
    for video in ds.videos("train")[:4]:
        exact = ds.read(video, "flow").astype(np.float32)
        est = optical_flow(ds.read(video, "rgb"), 2, FarnebackOptions(winsize=7)).astype(np.float32)
        assert est.shape == exact.shape
        moving = np.linalg.norm(exact, axis=1) > 0.5
        dot = (exact * est).sum(1)[moving]
        cosines.append(dot / (np.linalg.norm(exact, axis=1)[moving] * np.linalg.norm(est, axis=1)[moving] + 1e-6))
    # the object's pixels: estimated motion along the exact one (0.82 measured; 0 = unrelated)
    assert np.concatenate(cosines).mean() > 0.7


def test_data_flow_command_mirrors_videos_and_names_a_corrupt_one(capsys, data_root, tmp_path):
    ds = SynthDataset(SynthOptions(size="tiny"), data_root, log=lambda m: None)
    src = tmp_path / "videos"
    (src / "a").mkdir(parents=True)
    first, second = ds.videos("train")[:2]
    shutil.copy(ds.root / first.files["rgb"], src / "a" / "one.mp4")
    shutil.copy(ds.root / second.files["rgb"], src / "two.mp4")
    (src / "zz-broken.mp4").write_bytes(b"not a video")
    out = tmp_path / "flow"

    assert main(["data", "flow", str(src), "--out", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"xbench: error: corrupt video file {src / 'zz-broken.mp4'}:") and "\n" not in err
    # what was prepared before the bad file is kept, complete
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*")) == ["a", "a/one.npy", "two.npy"]
    assert np.load(out / "two.npy").shape == (second.num_frames, 2, 16, 16)

    (src / "zz-broken.mp4").unlink()
    assert main(["data", "flow", str(src), "--out", str(out), "--quiet"]) == 0
    assert capsys.readouterr().out == f"flow: 0 written, 2 already there, in {out}\n"
    assert main(["data", "flow", str(src), "--out", str(out), "--quiet", "--overwrite"]) == 0
    assert capsys.readouterr().out == f"flow: 2 written, 0 already there, in {out}\n"

    assert main(["data", "flow", str(tmp_path / "nowhere"), "--out", str(out)]) == 2
    assert capsys.readouterr().err == f"xbench: error: no such video file or folder: {tmp_path / 'nowhere'}\n"


def test_synth_reads_prepared_flow_from_flow_dir(data_root, tmp_path):
    exact = SynthDataset(SynthOptions(size="tiny"), data_root, log=lambda m: None)
    out = tmp_path / "flow"
    assert main(["data", "flow", str(exact.root), "--out", str(out), "--winsize", "7", "--quiet"]) == 0
    prepared = SynthDataset(SynthOptions(size="tiny", flow_dir=str(out)), data_root, log=lambda m: None)
    assert prepared.root == exact.root  # same generated files; only where flow is read from differs
    video = exact.videos("val")[0]
    np.testing.assert_array_equal(prepared.read(video, "flow"), np.load(out / "videos" / "val" / f"{video.id}.npy"))
    assert not np.array_equal(prepared.read(video, "flow"), exact.read(video, "flow"))

    missing = out / "videos" / "val" / f"{video.id}.npy"
    np.save(missing, np.zeros((3, 2, 16, 16), dtype=np.float16))
    with pytest.raises(DataError, match=f"flow file {missing} has shape \\(3, 2, 16, 16\\)"):
        prepared.read(video, "flow")
    missing.unlink()
    with pytest.raises(DataError, match=f"missing flow file {missing}: prepare it with 'xbench data flow"):
        prepared.read(video, "flow")


def test_real_video_reads_prepared_flow_resized_and_scaled_as_its_frames(tmp_path):
    from xbench.data.official import TSUOptions, open_tsu
    from xbench.data.video import probe

    root = tmp_path / "tsu"
    encoded.tsu_tree(root)
    small = {"short_side": 32, "crop": 32, "val_fraction": 0.2}
    with pytest.raises(DataError, match=r"^dataset 'toyota-smarthome' has no flow: set dataset.flow_dir=FOLDER"):
        ds = open_tsu(TSUOptions(root=str(root), **small), tmp_path / "home")
        ds.read(ds.videos("test")[0], "flow")
    videos = sorted((root / "videos").glob("*.mp4"))
    p = probe(videos[0])
    # a field moving every pixel 2 px right and 1 px up, at half the source resolution (--pool 2)
    field = np.zeros((p.frames, 2, p.height // 2, p.width // 2), dtype=np.float16)
    field[:, 0], field[:, 1] = 2.0, -1.0
    for v in videos[1:]:
        io.write_array(root / "flow" / "videos" / f"{v.stem}.npy", field)
    with pytest.raises(DataError, match=r"^dataset 'toyota-smarthome': no flow file for 1 of 8 videos \(first: "
                                        rf"{root / 'flow' / 'videos' / videos[0].stem}.npy\); prepare them with "
                                        rf"'xbench data flow {root} --out {root / 'flow'}'$"):
        open_tsu(TSUOptions(root=str(root), flow_dir=str(root / "flow"), **small), tmp_path / "home")
    io.write_array(root / "flow" / "videos" / f"{videos[0].stem}.npy", field)
    ds = open_tsu(TSUOptions(root=str(root), flow_dir=str(root / "flow"), **small), tmp_path / "home")
    video = ds.videos("test")[0]
    flow = ds.read(video, "flow")
    # the frames' short side 36 -> 32, cropped to 32 x 32: the flow's grid 16 x 16, vectors x 32/36
    assert (flow.shape, flow.dtype) == ((video.num_frames, 2, 16, 16), np.float16)
    np.testing.assert_allclose(flow[:, 0], 2.0 * 32 / p.height, rtol=1e-3)
    np.testing.assert_allclose(flow[:, 1], -1.0 * 32 / p.height, rtol=1e-3)
    # the flow files are data: another field is another data hash
    before = ds.manifest_hash()
    io.write_array(root / "flow" / "videos" / f"{videos[0].stem}.npy", field * 2)
    again = open_tsu(TSUOptions(root=str(root), flow_dir=str(root / "flow"), **small), tmp_path / "home")
    assert again.manifest_hash() != before
    io.write_array(root / "flow" / "videos" / f"{videos[0].stem}.npy", field[:3])
    bad = open_tsu(TSUOptions(root=str(root), flow_dir=str(root / "flow"), **small), tmp_path / "home")
    first = next(v for s in ("train", "val", "test") for v in bad.videos(s) if Path(v.files["rgb"]).stem == videos[0].stem)
    with pytest.raises(DataError, match=r"flow file .* has shape \(3, 2, 18, 24\); its video needs at least"):
        bad.read(first, "flow")
