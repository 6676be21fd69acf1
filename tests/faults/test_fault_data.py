"""Damaged data files are found and generated again, never used: a corrupt or missing file, a
corrupt annotation file, a file garbled with its size and mtime kept (caught by its ctime), and a
memo that vouches for a changed file (caught by ``xbench data check`` and ``run --verify-data``)."""

from __future__ import annotations

import json
import os

from xbench.cli import main
from xbench.data import io
from xbench.data.synth import SynthDataset, SynthOptions


def test_corrupt_and_missing_files_are_named_and_regenerated(tmp_path):
    ds = SynthDataset(SynthOptions(size="tiny"), tmp_path, log=lambda m: None)
    video = ds.root / "videos/train/train_00001.mp4"
    good = video.read_bytes()
    video.write_bytes(b"not a video")
    (ds.root / "flow/val/val_00002.npy").unlink()
    outside = tmp_path / "keep.txt"
    outside.write_text("mine")
    messages = []
    SynthDataset(SynthOptions(size="tiny"), tmp_path, log=messages.append)
    assert messages == [
        f"synth: corrupt file {video} (hash mismatch); regenerating it",
        f"synth: missing file {ds.root / 'flow/val/val_00002.npy'}; regenerating it",
        f"synth: generating 2 videos in {ds.root}",
    ]
    assert video.read_bytes() == good
    assert outside.read_text() == "mine"


def test_opening_rehashes_only_files_whose_stat_changed(tmp_path, monkeypatch):
    ds = SynthDataset(SynthOptions(size="tiny"), tmp_path, log=lambda m: None)
    hashed = []
    real = io.sha256_file
    monkeypatch.setattr(io, "sha256_file", lambda path: hashed.append(path) or real(path))
    SynthDataset(SynthOptions(size="tiny"), tmp_path, log=lambda m: None)
    assert hashed == []  # every file verified before, none changed since
    # the same size, other bytes: the write changes its stat, so it is hashed and caught
    video = ds.root / "videos/train/train_00001.mp4"
    good = video.read_bytes()
    video.write_bytes(bytes(255 - b for b in good))
    messages = []
    SynthDataset(SynthOptions(size="tiny"), tmp_path, log=messages.append)
    assert messages[0] == f"synth: corrupt file {video} (hash mismatch); regenerating it"
    assert video.read_bytes() == good
    # a lost or broken memo only means hashing everything once more
    (ds.root / ".hashes.json").write_text("{not json")
    hashed.clear()
    SynthDataset(SynthOptions(size="tiny"), tmp_path, log=lambda m: None)
    manifest = json.loads((ds.root / "manifest.json").read_text())
    assert len(hashed) == len(manifest["files"]) + len(manifest["annotations"]) == 140


def test_corrupt_annotation_is_named_and_rewritten(tmp_path):
    ds = SynthDataset(SynthOptions(size="tiny"), tmp_path, log=lambda m: None)
    ann = ds.root / "annotations/val.json"
    good = ann.read_text()
    ann.write_text("{ broken")
    messages = []
    SynthDataset(SynthOptions(size="tiny"), tmp_path, log=messages.append)
    assert messages == [f"synth: annotation files in {ds.root} are missing or corrupt; rewriting them"]
    assert ann.read_text() == good


def _garble_keeping_size_and_mtime(path):
    """Other bytes of the same length, the mtime put back (``touch -r``, a copy keeping times)."""
    st = path.stat()
    good = path.read_bytes()
    path.write_bytes(bytes(255 - b for b in good))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert (path.stat().st_size, path.stat().st_mtime_ns) == (st.st_size, st.st_mtime_ns)
    return good


def test_a_file_garbled_with_its_size_and_mtime_kept_is_caught_by_its_ctime(tmp_path):
    ds = SynthDataset(SynthOptions(size="tiny"), tmp_path, log=lambda m: None)
    audio = ds.root / "audio/train/train_00003.wav"
    good = _garble_keeping_size_and_mtime(audio)
    messages = []
    again = SynthDataset(SynthOptions(size="tiny"), tmp_path, log=messages.append)
    assert messages == [f"synth: corrupt file {audio} (hash mismatch); regenerating it",
                        f"synth: generating 1 videos in {ds.root}"]
    assert again.repaired == {"audio/train/train_00003.wav": "hash mismatch"} and again.verified == 1
    assert audio.read_bytes() == good


def test_verifying_hashes_every_file_and_data_check_regenerates_what_fails(tmp_path, capsys, monkeypatch):
    """A memo that vouches for a changed file (a stat that came back, a memo copied with the
    data) fools the fast pass; ``xbench data check`` and ``run --verify-data`` hash everything."""
    ds = SynthDataset(SynthOptions(size="tiny"), tmp_path, log=lambda m: None)
    video = ds.root / "videos/val/val_00001.mp4"
    good = _garble_keeping_size_and_mtime(video)
    memo = json.loads((ds.root / ".hashes.json").read_text())
    memo["videos/val/val_00001.mp4"][:-1] = io.stamp(video.stat())  # the memo now vouches for it
    (ds.root / ".hashes.json").write_text(json.dumps(memo))
    quiet = SynthDataset(SynthOptions(size="tiny"), tmp_path, log=lambda m: None)
    assert (quiet.repaired, quiet.verified) == ({}, 0)  # what the fast pass cannot see
    assert main(["data", "check", "synth", "--root", str(tmp_path)]) == 1
    assert capsys.readouterr().out == (
        f"regenerated: {video}: hash mismatch\n"
        f"synth under {tmp_path / 'synth'}: 1 generated sets, 140 files verified (sha256), 1 regenerated\n")
    assert video.read_bytes() == good
    assert main(["data", "check", "synth", "--root", str(tmp_path), "--set", "size=tiny"]) == 0
    assert capsys.readouterr().out == \
        f"synth under {tmp_path / 'synth'}: 1 generated sets, 140 files verified (sha256), 0 regenerated\n"
    with io.verifying():
        assert SynthDataset(SynthOptions(size="tiny"), tmp_path, log=lambda m: None).verified == 140
    # a run asked to verify: the file is generated again before anything reads it
    _garble_keeping_size_and_mtime(video)
    memo = json.loads((ds.root / ".hashes.json").read_text())
    memo["videos/val/val_00001.mp4"][:-1] = io.stamp(video.stat())
    (ds.root / ".hashes.json").write_text(json.dumps(memo))
    monkeypatch.setenv("XBENCH_DATA", str(tmp_path))
    assert main(["run", "--method", "student", "--task", "recognition", "--tier", "smoke", "--verify-data"]) == 0
    assert f"synth: corrupt file {video} (hash mismatch); regenerating it" in capsys.readouterr().err
    assert video.read_bytes() == good
    # an option set not generated yet is said, not generated
    assert main(["data", "check", "synth", "--root", str(tmp_path), "--set", "size=small"]) == 0
    small = tmp_path / "synth" / SynthOptions(size="small").generation_key()
    assert capsys.readouterr().out == (f"not checked: {small}: not generated yet\n"
                                       f"synth under {tmp_path / 'synth'}: 0 generated sets, 0 files verified "
                                       "(sha256), 0 regenerated\n")
    assert not small.exists()
