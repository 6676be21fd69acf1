"""The conformance checks of xbench.testing over every registered spec."""

from __future__ import annotations

import pytest
import torch

from xbench import conformance, testing
from xbench.backbones import library_models
from xbench.registry import build_registry

REG = build_registry()
#: the library models (xbench.backbones) are registered as students and as teachers from the same
#: factories: each code path is checked once, as a student, at the tiny synth size. Left out: the
#: larger twins of a checked model (same code, more layers: r3d-18 of r2plus1d-18's path,
#: videomae-b of videomae-s, tsn-resnet50 of tsn-resnet18) and mvit-v2-s, built for 16 frames of
#: 224 px only (shapes of all of them are checked on the meta device in test_backbones); and
#: hubert-base, wav2vec2's twin (the speech encoders read waveforms, which the kit's tiny data
#: does not give: wav2vec2-base trains on them in test_backbones)
LIBRARY = {row[0] for row in library_models()}
TWINS = {"r3d-18", "videomae-b", "tsn-resnet50", "mvit-v2-s", "hubert-base", "wav2vec2-base"}


def _task_of(registry, kind: str, name: str) -> str:
    """A task that uses this model: its student, or one whose examples carry its modalities."""
    tasks = [registry.get("tasks", t) for t in registry.names("tasks")]
    if kind == "students":  # a task's own student, else a clip task (the library video students)
        return next((t.name for t in tasks if t.student == name), "recognition")
    spec = registry.get(kind, name)
    for task in tasks:  # a task whose default teacher this is
        if task.default_teacher == name or task.name in spec.default_for:
            return task.name
    if "snippets" in spec.taps:  # the detection architecture on other modalities
        return "detection"
    return "anticipation" if "text" in spec.modalities else "recognition"


@pytest.mark.parametrize("name", [n for n in REG.names("students") if n not in TWINS])
def test_student_conforms(registry, data_root, name):
    testing.check_model(registry, "students", name, data_root, _task_of(registry, "students", name))


@pytest.mark.parametrize("name", [n for n in REG.names("teachers") if n not in LIBRARY])
def test_teacher_conforms(registry, data_root, name):
    testing.check_model(registry, "teachers", name, data_root, _task_of(registry, "teachers", name))


@pytest.mark.parametrize("name", REG.names("losses"))
def test_loss_conforms(registry, name):
    testing.check_loss(registry, name)


METHOD_TASKS = [(m, t) for m in REG.names("methods") for t in REG.names("tasks")
                if REG.get("methods", m).tasks is None or t in REG.get("methods", m).tasks]


@pytest.mark.parametrize("name, task", METHOD_TASKS)
def test_method_conforms(registry, data_root, name, task):
    rec = testing.check_method(registry, name, task, data_root)
    assert rec.budget.stages[-1].steps == 2


@pytest.mark.parametrize("name", REG.names("tasks"))
def test_task_conforms(registry, data_root, name):
    spec = registry.get("tasks", name)
    _, task, batch = testing.tiny_examples(registry, name, spec.student_modalities, data_root)
    assert set(spec.targets) | {"label_mask"} <= set(batch)
    assert spec.main_metric in task.metrics


@pytest.mark.parametrize("name", REG.names("datasets"))
def test_dataset_conforms(registry, data_root, name):
    spec = registry.get("datasets", name)
    ds = spec.factory(conformance.dataset_options(spec, data_root), data_root)  # a sample for your-files datasets
    for split in ("train", "val", "test", "teacher"):
        assert ds.videos(split), f"dataset '{name}' has an empty {split} split"
    video = ds.videos("val")[0]
    # what this dataset gives as opened (a real one gives flow only where prepared flow is given)
    for modality in getattr(ds, "modalities", spec.modalities):
        if modality != "text":
            assert len(ds.read(video, modality)) == video.num_frames or modality == "audio"


def test_frozen_teacher_change_is_caught(registry, data_root, add_plugin):
    """A method whose loss writes into the teacher's features' source is stopped by the harness."""
    add_plugin("sneaky", """
        import torch
        from xbench import hookimpl
        from xbench.specs import LossSpec, LossTerm, MethodSpec

        class Sneaky(torch.nn.Module):
            def forward(self, s, t):
                import gc
                for obj in gc.get_objects():  # reach the teacher and nudge a buffer
                    if type(obj).__name__ == "AudioTeacher":
                        next(iter(obj.buffers())).add_(1.0)
                return s.float().pow(2).mean()

        @hookimpl
        def xbench_register_losses(register):
            register(LossSpec(name="sneaky", description="d", factory=lambda o, d: Sneaky()))

        @hookimpl
        def xbench_register_methods(register):
            register(MethodSpec(name="sneaky", description="d",
                                terms=lambda o: [LossTerm("sneaky", teacher="logits")]))
    """)
    with pytest.raises(AssertionError, match=r"^method 'sneaky' on recognition: frozen teacher unchanged: "
                                             r"plugin 'sneaky': method 'sneaky' changed the frozen teacher"):
        testing.check_method(build_registry(), "sneaky", "recognition", data_root)


def test_a_time_step_loss_that_reads_padding_is_caught(add_plugin):
    add_plugin("leaky", """
        import torch
        from xbench import hookimpl
        from xbench.specs import LossSpec

        class Leaky(torch.nn.Module):
            def forward(self, s, t, positions=None):  # takes the mask, then ignores it
                return (s - t).pow(2).mean()

        @hookimpl
        def xbench_register_losses(register):
            register(LossSpec(name="leaky", description="d", factory=lambda o, d: Leaky(), positions=True))
    """)
    with pytest.raises(AssertionError, match=r"^loss 'leaky': ignores padded positions: depends on padded positions"):
        testing.check_loss(build_registry(), "leaky")


def test_term_shares_find_a_weighted_term_that_does_nothing(registry, data_root):
    """cc's first default weight (0.02, set for another form of the loss) left its term at well
    under 1% of the task loss on the tiny data: the kit's 'no inert term' check fails on it. kd's
    term is about half of the task loss; cc's weight of 50 puts its term at 2% on batches of 4."""
    from xbench.config import RunConfig, load_tiers, replace_options
    from xbench.run import execute, plan
    from xbench.testing import INERT, inert_terms, micro_tier, term_shares

    tiers = {"micro": replace_options(micro_tier(load_tiers()["smoke"]), {"name": "micro"}, "micro")}

    def shares(method, **options):
        cfg = RunConfig(method=method, task="recognition", budget="micro", method_options=options)
        rec = execute(plan(registry, cfg, tiers), 0, device=torch.device("cpu"), data_root=data_root)
        return rec, term_shares(rec)

    kd, kd_shares = shares("kd")
    first = kd.budget.stage("student").curve[0]
    assert kd_shares == {"kd": abs(first.terms["kd"]) / abs(first.terms["ce"])}
    assert round(kd_shares["kd"], 2) == 0.45 and inert_terms(kd) == {}
    cc_old, old_shares = shares("cc", weight=0.02)
    assert list(inert_terms(cc_old)) == ["cc"] and old_shares["cc"] < INERT / 10
    cc, cc_shares = shares("cc")
    assert inert_terms(cc) == {} and round(cc_shares["cc"], 3) == 0.020
