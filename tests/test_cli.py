"""Bad input at the command line: one line on stderr naming the culprit, exit status 2, no
traceback, and nothing stored."""

from __future__ import annotations

import pytest

from xbench.cli import main
from xbench.store import ResultStore

SMOKE = ["--task", "recognition", "--budget", "smoke", "--quiet"]


def _fails(capsys, argv) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    # progress lines (data generation) may precede it; the error itself is one line, the last
    errors = [line for line in err.splitlines() if line.startswith("xbench: error:")]
    assert len(errors) == 1 and err.endswith(errors[0] + "\n")
    assert ResultStore().records() == []
    return errors[0] + "\n"


@pytest.mark.parametrize("argv, message", [
    (["run", "--method", "kdd", *SMOKE], "unknown method 'kdd'; did you mean 'kd'?"),
    (["run", "--method", "kd", "--task", "recogniton"], "unknown task 'recogniton'; did you mean 'recognition'?"),
    (["run", "--method", "kd", "--dataset", "synht", *SMOKE], "unknown dataset 'synht'; did you mean 'synth'?"),
    (["run", "--method", "kd", "--task", "recognition", "--budget", "smok"],
     "unknown budget tier 'smok'; did you mean 'smoke'?"),
    (["run", "--method", "kd", *SMOKE, "--set", "method.T=hot"],
     "method 'kd' options: key 'T': expected float, got 'hot'"),
    (["run", "--method", "kd", *SMOKE, "--set", "method.temperature=2"],
     "method 'kd' options: unknown key 'temperature' (known: T, alpha)"),
    (["run", "--method", "kd", *SMOKE, "--set", "dataset.pixel_noise=-1"],
     "dataset 'synth' options: pixel_noise must be in [0, 1]"),
    (["run", "--method", "kd", *SMOKE, "--set", "budget.student_steps=many"],
     "budget tier 'smoke': key 'student_steps': expected int, got 'many'"),
    (["run", "--method", "kd", *SMOKE, "--set", "T=2"],
     "--set T=2: expected SECTION.KEY=VALUE with SECTION one of dataset, task, method, budget, teacher, student, hparams"),
    (["run", "--task", "recognition"], "no method given: pass --method or set 'method' in --config"),
])
def test_bad_run_input(capsys, argv, message):
    assert _fails(capsys, argv) == f"xbench: error: {message}\n"


def test_bad_yaml_config_names_file_and_line(capsys, tmp_path):
    cfg = tmp_path / "run.yaml"
    cfg.write_text("method: kd\ntask: recognition\nseeds: [0, 1\n")
    assert _fails(capsys, ["run", "--config", str(cfg)]).startswith(f"xbench: error: {cfg}:4: bad YAML")
    cfg.write_text("method: kd\ntask: recognition\nseed: 3\n")
    assert _fails(capsys, ["run", "--config", str(cfg)]) == (
        f"xbench: error: {cfg}: unknown key 'seed' (known: budget, budget_options, dataset, "
        f"dataset_options, device, hparams, method, method_options, regime, seeds, student, student_options, task, task_options, "
                              "teacher, teacher_options, trial, tuning)\n")


def test_incompatible_method_and_task(capsys, add_plugin):
    add_plugin("detonly", """
        from xbench import hookimpl
        from xbench.specs import LossTerm, MethodSpec, TeacherSpec

        @hookimpl
        def xbench_register_methods(register):
            register(MethodSpec(name="det-only", description="d", tasks=("detection",),
                                terms=lambda o: [LossTerm("ce", target="label")]))
            register(MethodSpec(name="depth-kd", description="d", teacher="depth-net",
                                terms=lambda o: [LossTerm("kd", teacher="logits")]))

        @hookimpl
        def xbench_register_teachers(register):
            register(TeacherSpec(name="depth-net", description="d", factory=None, modalities=("depth",)))
    """)
    assert _fails(capsys, ["run", "--method", "det-only", *SMOKE]) == (
        "xbench: error: method 'det-only' does not support task 'recognition' (it supports: detection)\n")
    assert _fails(capsys, ["run", "--method", "depth-kd", *SMOKE]) == (
        "xbench: error: method 'depth-kd' needs modality 'depth' (teacher 'depth-net'), which dataset "
        "'synth' does not provide\n")


def test_plugin_raising_at_run_time_is_named(capsys, add_plugin):
    add_plugin("badloss", """
        import torch
        from xbench import hookimpl
        from xbench.specs import LossSpec, LossTerm, MethodSpec

        class NaNLoss(torch.nn.Module):
            def forward(self, s, t):
                return (s * float("nan")).mean()

        def broken(opts, dims):
            raise RuntimeError("cannot build")

        @hookimpl
        def xbench_register_losses(register):
            register(LossSpec(name="nan", description="d", factory=lambda o, d: NaNLoss()))
            register(LossSpec(name="broken", description="d", factory=broken))

        @hookimpl
        def xbench_register_methods(register):
            register(MethodSpec(name="nan-kd", description="d",
                                terms=lambda o: [LossTerm("nan", teacher="logits")]))
            register(MethodSpec(name="broken-kd", description="d",
                                terms=lambda o: [LossTerm("broken", teacher="logits")]))
    """)
    assert _fails(capsys, ["run", "--method", "broken-kd", *SMOKE]) == (
        "xbench: error: plugin 'badloss' raised in loss 'broken': RuntimeError: cannot build\n")
    assert _fails(capsys, ["run", "--method", "nan-kd", *SMOKE]) == (
        "xbench: error: plugin 'badloss': method 'nan-kd': loss term 'nan' is not finite at step 15\n")


def test_corrupt_file_of_a_dataset_plugin_is_named(capsys, add_plugin, tmp_path):
    """A dataset whose video file is corrupt (the path real-data adapters use)."""
    bad = tmp_path / "clip.mp4"
    bad.write_bytes(b"\\x00" * 64)
    add_plugin("brokendata", f"""
        from pathlib import Path
        from xbench import hookimpl
        from xbench.data import io
        from xbench.data.synth import SynthDataset, SynthOptions
        from xbench.specs import DatasetSpec, TaskSpec
        from xbench.tasks import RecognitionOptions, RecognitionTask

        class Broken(SynthDataset):
            def read(self, video, modality):
                if modality == "rgb":
                    return io.read_mp4(Path({str(bad)!r}))
                return super().read(video, modality)

        @hookimpl
        def xbench_register_datasets(register):
            register(DatasetSpec(name="broken", description="d", modalities=("rgb", "audio"),
                                 factory=lambda o, root: Broken(o, root), options=SynthOptions))

        @hookimpl
        def xbench_register_tasks(register):
            register(TaskSpec(name="recognition-broken", description="d", factory=RecognitionTask,
                              student="frame-cnn", default_teacher="audio-cnn", default_dataset="broken",
                              options=RecognitionOptions))
    """)
    err = _fails(capsys, ["run", "--method", "student", "--task", "recognition-broken",
                          "--budget", "smoke", "--quiet"])
    assert err.startswith(f"xbench: error: corrupt video file {bad}: ")


def test_synth_names_and_repairs_a_corrupt_video(capsys, data_root):
    from xbench.data.synth import SynthDataset, SynthOptions

    ds = SynthDataset(SynthOptions(size="tiny"), data_root, log=lambda m: None)
    video = ds.root / "videos/test/test_00003.mp4"
    video.write_bytes(b"garbage")
    # not --quiet: the repair is reported as progress is, and --quiet shows errors only
    assert main(["run", "--method", "student", *SMOKE[:-1]]) == 0
    err = capsys.readouterr().err
    assert f"synth: corrupt file {video} (hash mismatch); regenerating it\n" in err
    assert len(ResultStore().records()) == 1


def test_run_prints_summary_and_stores(capsys):
    assert main(["run", "--method", "student", *SMOKE, "--seed", "0", "1"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == ("student on recognition (synth), tier smoke, test metrics of the val-selected "
                      "student; main metric: top1")
    assert out[1].split() == ["seed", "top1", "top1_clean_audio", "top1_noisy_audio", "top5",
                              "class_mean", "steps", "samples", "teacher", "fwd", "seconds", "limit", "hit"]
    assert [line.split()[0] for line in out[3:]] == ["0", "1", "mean"]
    assert [line.split()[6:8] for line in out[3:5]] == [["30", "480"], ["30", "480"]]
    recs = ResultStore().records()
    assert [r.seed for r in recs] == [0, 1]
    assert main(["runs"]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 4


def test_quiet_prints_nothing_but_the_table_even_while_data_is_generated(capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("XBENCH_DATA", str(tmp_path / "fresh-data"))  # synth is generated in this run
    assert main(["run", "--method", "student", "--task", "recognition", "--budget", "smoke", "--quiet"]) == 0
    out, err = capsys.readouterr()
    assert err == ""
    assert out.splitlines()[0].startswith("student on recognition (synth), tier smoke")
    assert main(["run", "--method", "student", "--task", "recognition", "--budget", "smoke",
                 "--set", "dataset.seed=1"]) == 0
    assert "synth: generating 34 videos in " in capsys.readouterr().err


def test_one_rule_for_boolean_settings(monkeypatch):
    from xbench.errors import ConfigError
    from xbench.settings import settings

    for value, on in (("0", False), ("off", False), ("No", False), ("1", True), ("TRUE", True), ("on", True)):
        monkeypatch.setenv("XBENCH_TEACHER_CACHE", value)
        monkeypatch.setenv("XBENCH_TRACEBACK", value)
        assert (settings().teacher_cache, settings().traceback) == (on, on)
    monkeypatch.setenv("XBENCH_DECODE_CACHE", "maybe")
    with pytest.raises(ConfigError, match=r"^XBENCH_DECODE_CACHE='maybe': expected one of 1, true, yes, on or "
                                          r"0, false, no, off$"):
        settings()
