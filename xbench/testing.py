"""The conformance kit: checks every registered spec must pass, for xbench's own tests, for a
plugin author's tests, and for ``xbench check``.

Two ways in:

- ``check_model`` / ``check_loss`` / ``check_method`` raise AssertionError with a message naming
  the spec (the project's own parametrised tests);
- :func:`plugin_checks` (and the ``xbench_check`` pytest fixture, ``xbench check`` on the command
  line) run the same checks one by one and return a :class:`CheckResult` per named check, so a
  failure is reported by the check's name: builds, forward and backward, output shapes,
  deterministic on CPU, finite loss, budget obeyed, selection on val only, no privileged input at
  evaluation, frozen teacher unchanged, registers cheaply.

This module is also a pytest plugin (entry point ``pytest11: xbench``), giving any test session
the fixtures ``xbench_registry`` (a fresh plugin manager with every installed plugin, the
author's included), ``xbench_data`` (the ``tiny`` synthetic data, generated once per session) and
``xbench_check``. Imports of torch and the harness happen inside functions, so loading the plugin
costs a pytest session that never uses it nothing.

None of the checks needs a GPU or a download.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from xbench.config import Tier
    from xbench.records import RunRecord
    from xbench.registry import Registry

#: a budget small enough for a conformance run: two steps of each stage
MICRO = {"student_steps": 2, "teacher_steps": 2, "pretrain_steps": 2, "probe_steps": 2, "finetune_steps": 2,
         "eval_every": 2, "batch_size": 4}


@dataclass(frozen=True)
class CheckResult:
    """One named check of one spec: ``ok`` True (passed), False (failed, ``detail`` says why) or
    None (not run, because a check it needs failed)."""

    check: str
    subject: str
    ok: bool | None
    detail: str = ""
    seconds: float = 0.0

    def line(self) -> str:
        status = {True: "PASS", False: "FAIL", None: "SKIP"}[self.ok]
        return f"{status}  {self.check:<34} {self.subject}" + (f": {self.detail}" if self.detail else "")


Step = tuple[str, Callable[[], Any]]


def seeded_randn(*shape: int, seed: int = 0) -> Any:
    """A standard-normal tensor from its own seeded generator: the tiny inputs of golden-value
    tests, the same on every machine and unaffected by the global RNG."""
    import torch

    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def run_steps(subject: str, steps: list[Step]) -> list[CheckResult]:
    """Run named checks in order; after a failure the rest are reported as not run."""
    out: list[CheckResult] = []
    failed = None
    for name, fn in steps:
        if failed is not None:
            out.append(CheckResult(name, subject, None, f"not run: '{failed}' failed"))
            continue
        t0 = time.perf_counter()
        try:
            fn()
        except AssertionError as exc:
            # the message's first line: under pytest (this module is a pytest plugin, so its
            # asserts are rewritten) the rest explains the assert expression
            detail = str(exc).split("\n")[0].removeprefix(f"{subject}: ") or "assertion failed"
            out.append(CheckResult(name, subject, False, detail, time.perf_counter() - t0))
            failed = name
        except Exception as exc:  # noqa: BLE001 - the spec's own error: reported by the check it broke
            out.append(CheckResult(name, subject, False, f"{type(exc).__name__}: {exc}", time.perf_counter() - t0))
            failed = name
        else:
            out.append(CheckResult(name, subject, True, "", time.perf_counter() - t0))
    return out


def _raise_first(results: list[CheckResult]) -> None:
    bad = next((r for r in results if r.ok is False), None)
    if bad is not None:
        raise AssertionError(f"{bad.subject}: {bad.check}: {bad.detail}")


def _tiny(reg: Registry, dataset: str, data_root: str, task: str):
    from xbench.conformance import small_options

    spec = reg.get("datasets", dataset)
    t = reg.get("tasks", task)
    # the data the task runs on: tiny, with the task's own dataset defaults (e.g. overlaps)
    ds = spec.factory(small_options(spec.options, t.dataset_defaults), Path(data_root))
    return ds, t.factory(t.options())


def tiny_examples(reg: Registry, task: str, modalities: tuple[str, ...], data_root: Path, n: int = 4):
    """``n`` examples of the task's first dataset at size tiny, with the given modalities."""
    import torch

    t = reg.get("tasks", task)
    ds, task_obj = _tiny(reg, t.default_dataset, str(data_root), task)
    ex = task_obj.examples(ds, "val", modalities)
    return ds, task_obj, ex.take(torch.arange(n))


def _ctx(ds, task_obj, batch: dict[str, Any]):
    import torch

    from xbench.specs import ModelContext

    return ModelContext(num_classes=ds.num_classes,
                        shapes={k: tuple(v.shape[1:]) for k, v in batch.items() if isinstance(v, torch.Tensor)},
                        extras=dict(getattr(task_obj, "extras", {})))


def model_steps(reg: Registry, kind: str, name: str, data_root: Path, task: str = "recognition") -> list[Step]:
    """A student or teacher: builds from its spec, forwards on its modalities only (plus its
    teacher-forcing targets) with every tap it declares, gives logits of the task's shape, a
    finite backward that reaches its parameters, and the same model for the same seed."""
    import torch

    from xbench.train import derive_seed

    spec = reg.get(kind, name)
    what = f"{kind[:-1]} '{name}'"
    st: dict[str, Any] = {}

    def build():
        ds, task_obj, batch = tiny_examples(reg, task, spec.modalities, data_root)
        st["ds"], st["inputs"] = ds, {m: batch[m] for m in spec.modalities + getattr(spec, "train_inputs", ())}
        st["ctx"] = _ctx(ds, task_obj, st["inputs"])
        torch.manual_seed(derive_seed(0, "conformance"))
        st["model"] = spec.factory(st["ctx"])
        assert isinstance(st["model"], torch.nn.Module), f"{what}: factory returned {type(st['model']).__name__}"

    def forward():
        st["model"].train()
        st["out"] = out = st["model"](st["inputs"])
        # "generated" is an evaluation-only tap (sentence decoding); the rest appear in training
        missing = [t for t in spec.taps if t not in out and t != "generated"]
        assert not missing, f"{what}: forward returned no tap(s) {missing}"

    def shapes():
        # (4, C), or (4, positions, C) for dense tasks (per-snippet detection scores)
        shape = tuple(st["out"]["logits"].shape)
        n = st["ds"].num_classes
        assert shape[0] == 4 and shape[-1] == n and len(shape) in (2, 3), \
            f"{what}: logits shape {shape}, expected (4, {n}) or (4, N, {n})"

    def backward():
        # every floating tap contributes, so every head a tap depends on gets a gradient
        loss = sum(v.float().mean() for v in st["out"].values() if v.is_floating_point())
        loss.backward()
        grads = [p.grad for p in st["model"].parameters() if p.requires_grad]
        assert any(g is not None for g in grads), f"{what}: no gradient reached it"
        assert all(torch.isfinite(g).all() for g in grads if g is not None), f"{what}: non-finite gradients"

    def deterministic():
        outs = []
        for _ in range(2):
            torch.manual_seed(derive_seed(0, "conformance"))
            model = spec.factory(st["ctx"]).eval()
            with torch.no_grad():
                outs.append(model({m: st["inputs"][m] for m in spec.modalities})["logits"])
        assert torch.equal(outs[0], outs[1]), f"{what}: not deterministic for a fixed seed"

    return [("builds", build), ("forward returns its taps", forward), ("output shapes", shapes),
            ("finite backward", backward), ("deterministic on CPU", deterministic)]


def check_model(reg: Registry, kind: str, name: str, data_root: Path, task: str = "recognition") -> None:
    """:func:`model_steps`, raising AssertionError at the first failure."""
    _raise_first(run_steps(f"{kind[:-1]} '{name}'", model_steps(reg, kind, name, data_root, task)))


def loss_steps(reg: Registry, name: str) -> list[Step]:
    """A loss with its default options: builds, a finite scalar with finite gradients, and (for a
    loss over time steps) nothing read from padded positions."""
    import torch

    spec = reg.get("losses", name)
    st: dict[str, Any] = {}

    def build():
        torch.manual_seed(0)
        # the same width on both sides: logit losses need it, feature losses size their heads by it
        st["loss"] = spec.factory(spec.options(), {"student": 8, "teacher": 8, "examples": 16})

    def finite():
        loss = st["loss"]
        args: list = list(spec.example()) if spec.example is not None else []
        if args:
            s = args[0].detach().requires_grad_(True)
            value = loss(s, *args[1:], **_keywords(spec, s))
        elif spec.reads == "target":
            s = torch.randn(4, 8, requires_grad=True)
            value = loss(s, torch.tensor([0, 1, 2, 3]), torch.tensor([True, True, False, True]))
        else:
            s = torch.randn(4, 8, requires_grad=True)
            value = loss(s, torch.randn(4, 8), **_keywords(spec, s))
        assert value.ndim == 0, f"loss '{name}': returned shape {tuple(value.shape)}, expected a scalar"
        assert math.isfinite(float(value.detach())), f"loss '{name}': not finite"
        value.backward()
        assert s.grad is not None and torch.isfinite(s.grad).all(), f"loss '{name}': bad gradient"
        st["args"] = args

    def positions():
        seqs = st["args"][:2]
        if not seqs or seqs[0].ndim < 3:  # (B, T, C) sequences of the same width
            g = torch.Generator().manual_seed(0)
            seqs = [torch.randn(2, 6, 8, generator=g), torch.randn(2, 6, 8, generator=g)]
        _check_positions(name, st["loss"], *seqs, **_keywords(spec, seqs[0]))

    steps = [("builds", build), ("finite loss and gradient", finite)]
    return steps + ([("ignores padded positions", positions)] if spec.positions else [])


def check_loss(reg: Registry, name: str) -> None:
    """:func:`loss_steps`, raising AssertionError at the first failure."""
    _raise_first(run_steps(f"loss '{name}'", loss_steps(reg, name)))


def _keywords(spec, student) -> dict[str, Any]:
    """The keyword arguments the harness passes a loss besides its taps: a target (class indices
    for (B, C) logits, multi-hot labels for (B, T, C) sequences, one per time step), the label
    mask (one example unlabelled) and example indices within a train split of 16."""
    import torch

    b, g = student.shape[0], torch.Generator().manual_seed(2)
    kw: dict[str, Any] = {}
    if spec.target:
        if student.ndim == 2:
            kw["target"] = torch.arange(b) % student.shape[-1]
        else:
            kw["target"] = (torch.rand(student.shape, generator=g) > 0.5).float()
        kw["label_mask"] = torch.arange(b) != b - 1
    if spec.index:
        kw["index"] = torch.arange(b)
    return kw


def _check_positions(name: str, loss, student, teacher, **kw) -> None:
    """A loss that takes ``positions`` ignores what is at padded time steps: the same value
    whatever the student and teacher hold there, and no gradient into it."""
    import torch

    positions = torch.ones(student.shape[:2], dtype=torch.bool)
    positions[0, -2:] = False  # a sequence shorter than the batch's
    s = student.detach().clone().requires_grad_(True)
    state = {k: v.clone() for k, v in loss.state_dict().items()}  # a memory bank moves per call
    torch.manual_seed(0)  # the same draws (CRD's negatives) for both calls
    value = loss(s, teacher, positions, **kw)
    value.backward()
    g = torch.Generator().manual_seed(1)
    s2, t2 = student.detach().clone(), teacher.detach().clone()
    s2[0, -2:] = torch.randn(s2[0, -2:].shape, generator=g) * 10
    t2[0, -2:] = torch.randn(t2[0, -2:].shape, generator=g) * 10
    loss.load_state_dict(state)
    torch.manual_seed(0)
    other = loss(s2, t2, positions, **kw)
    assert math.isfinite(float(value.detach())), f"loss '{name}': not finite with positions"
    assert torch.allclose(value.detach(), other.detach(), rtol=1e-5, atol=1e-6), \
        f"loss '{name}': depends on padded positions ({float(value.detach()):.6f} vs {float(other.detach()):.6f})"
    assert not s.grad[0, -2:].any(), f"loss '{name}': gradient into padded positions"


def micro_tier(tier: Tier) -> Tier:
    from xbench.config import replace_options

    return replace_options(tier, MICRO, "conformance tier")


def method_steps(reg: Registry, name: str, task: str, data_root: Path, deterministic: bool = True,
                 st: dict[str, Any] | None = None) -> list[Step]:
    """A method end to end on tiny data, two steps per stage: it plans (names, options, taps,
    modalities), runs, obeys the budget, selects on val only (nothing for a self-supervised
    method without fine-tuning), gives finite metrics, evaluates the student on the student's
    modalities only, has no inert teacher-fed term (:func:`inert_terms`: a weight under 1% of
    the task loss at its defaults), leaves the frozen teacher unchanged, and gives the same
    metrics for the same seed."""
    import torch

    from xbench.config import RunConfig, load_tiers, replace_options
    from xbench.errors import PluginError
    from xbench.run import execute, plan

    what = f"method '{name}' on {task}"
    st = {} if st is None else st  # the checks' shared state; st["rec"] is the run record

    def plans():  # at the method's kit options where a default presumes a trained teacher
        tiers = {"micro": replace_options(micro_tier(load_tiers()["smoke"]), {"name": "micro"}, "micro")}
        options = dict(reg.get("methods", name).kit_options)
        st["plan"] = plan(reg, RunConfig(method=name, task=task, budget="micro", method_options=options), tiers)

    def runs():
        try:
            st["rec"] = execute(st["plan"], 0, device=torch.device("cpu"), data_root=data_root)
        except PluginError as exc:
            if "changed the frozen teacher" in str(exc):
                st["teacher_changed"] = str(exc)
                return
            raise

    def teacher_unchanged():  # the harness compared the teacher's state before and after the stage
        assert "teacher_changed" not in st, st.get("teacher_changed")

    def budget():
        for stage in st["rec"].budget.stages:
            if stage.stage == "teacher-inference":  # one pass over the train split, no steps
                assert stage.steps == 0, f"{what}: teacher inference took optimizer steps"
                continue
            limit = MICRO[f"{stage.stage}_steps"]
            assert stage.steps <= limit, f"{what}: {stage.stage} ran {stage.steps} steps of {limit}"
            assert stage.samples <= limit * MICRO["batch_size"], f"{what}: {stage.stage} saw too many samples"

    def selection():
        rec, spec = st["rec"], reg.get("methods", name)
        if spec.labels or rec.selection.stage == "finetune":
            assert rec.selection.split == "val", f"{what}: selection not on val"
        else:  # self-supervised without fine-tuning: no labels, so nothing may have been selected
            assert rec.selection.split is None, f"{what}: selected on labels"

    def metrics():
        rec, t = st["rec"], reg.get("tasks", task)
        # a metric may be undefined on tiny data (NaN: no many-shot class), never infinite or missing
        assert all(isinstance(v, float) and not math.isinf(v) for v in rec.metrics.values()), \
            f"{what}: bad metric values {rec.metrics}"
        if reg.get("methods", name).evaluates == "student":
            assert math.isfinite(rec.metrics[t.main_metric]), f"{what}: main metric not finite"

    def privileged():
        if reg.get("methods", name).evaluates == "student":
            mods = st["rec"].eval_modalities
            assert mods == reg.get("tasks", task).student_modalities, f"{what}: student evaluated with {list(mods)}"

    def same_seed():
        again = execute(st["plan"], 0, device=torch.device("cpu"), data_root=data_root)
        a, b = st["rec"].metrics, again.metrics
        # NaN (a metric undefined on tiny data) equals NaN here
        same = a.keys() == b.keys() and all(a[k] == b[k] or (math.isnan(a[k]) and math.isnan(b[k])) for k in a)
        diff = next((f"{k} {a[k]} then {b[k]}" for k in a if not same and a.get(k) != b.get(k)), "")
        assert same, f"{what}: seed 0 gave other metrics on a second run ({diff})"

    def live():
        inert = inert_terms(st["rec"], reg.get("methods", name).regularizers)
        assert not inert, (f"{what}: weighted term(s) under {INERT:.0%} of the task loss at the defaults: "
                           + ", ".join(f"{k} {v:.2%}" for k, v in inert.items()))

    steps = [("plans", plans), ("runs end to end", runs), ("frozen teacher unchanged", teacher_unchanged),
             ("budget obeyed", budget), ("selection on val only", selection), ("finite metrics", metrics),
             ("no privileged input at evaluation", privileged), ("no inert term", live)]
    return steps + ([("deterministic on CPU", same_seed)] if deterministic else [])


#: a method's weighted term below this share of the task loss changes nothing a table can show
INERT = 0.01


def inert_terms(rec: RunRecord, regularizers: tuple[str, ...] = ()) -> dict[str, float]:
    """The method's weighted terms below ``INERT`` of the task loss at the start of training
    (:func:`term_shares`): a default taken from another setting that does nothing here. The
    objective terms named in ``regularizers`` (``MethodSpec.regularizers``) are left out."""
    skip = {f"{rec.config['method']}:{r}" for r in regularizers}
    return {k: v for k, v in term_shares(rec).items() if v < INERT and k not in skip}


def term_shares(rec: RunRecord) -> dict[str, float]:
    """Each term the method adds (a teacher-fed loss term, or a term of its objective), its
    weighted mean over the student stage's first evaluation window as a share of the task terms'
    (the supervised loss every method includes): what the method adds at its defaults. Empty
    where the record has no such window or no task term (a self-supervised stage)."""
    from xbench.context import Stage

    stage = rec.budget.stage(Stage.STUDENT)
    if stage is None or not stage.curve:
        return {}
    terms = rec.config.get("loss_terms") or []
    task = {t["key"] for t in terms if t.get("teacher") is None and t.get("target") is not None}
    first = stage.curve[0].terms
    base = sum(abs(first[k]) for k in task if k in first)
    if not base:
        return {}
    teacher_fed = {t["key"] for t in terms if t.get("teacher") is not None}
    objective = f"{rec.config['method']}:"  # the objective's terms are named method:term
    return {k: abs(v) / base for k, v in first.items() if k in teacher_fed or k.startswith(objective)}


def check_method(reg: Registry, name: str, task: str, data_root: Path) -> RunRecord:
    """:func:`method_steps` (one run), raising AssertionError at the first failure; returns the
    run record."""
    st: dict[str, Any] = {}
    _raise_first(run_steps(f"method '{name}' on {task}",
                           method_steps(reg, name, task, data_root, deterministic=False, st=st)))
    return st["rec"]


def registration_steps(plugin: str) -> list[Step]:
    """Registering is cheap and offline: the plugin's register hooks, called again, open no
    network connection, build no model and take under a second."""
    import socket

    import torch

    from xbench.registry import build_registry

    st: dict[str, Any] = {}

    def offline_and_cheap():
        built: list[str] = []
        real_init, real_connect = torch.nn.Module.__init__, socket.socket.connect

        def counting_init(self, *a, **kw):
            built.append(type(self).__name__)
            real_init(self, *a, **kw)

        def no_network(self, *a, **kw):
            raise AssertionError(f"plugin '{plugin}' opened a network connection to {a[0] if a else '?'} while registering")

        build_registry()  # imports every plugin first: import time is not registration time
        torch.nn.Module.__init__, socket.socket.connect = counting_init, no_network
        try:
            t0 = time.perf_counter()
            st["reg"] = build_registry()
            seconds = time.perf_counter() - t0
        finally:
            torch.nn.Module.__init__, socket.socket.connect = real_init, real_connect
        assert plugin in st["reg"].plugins, f"plugin '{plugin}' is not installed (no 'xbench' entry point)"
        assert not built, f"plugin '{plugin}' built {built[0]} while registering: specs hold factories"
        assert seconds < 1.0, f"registering every plugin took {seconds:.2f} s"

    return [("registers cheaply, offline", offline_and_cheap)]


def plugin_checks(reg: Registry, data_root: Path, plugin: str | None = None, method: str | None = None,
                  task: str | None = None, say: Callable[[CheckResult], None] = lambda r: None) -> list[CheckResult]:
    """Every check of what ``plugin`` registers (everything, when neither it nor ``method`` is
    given), or of one ``method`` on every task it fits (or on ``task``)."""
    from xbench.conformance import dataset_steps, task_steps
    from xbench.errors import XbenchError

    results: list[CheckResult] = []

    def add(subject: str, steps: list[Step]) -> None:
        for r in run_steps(subject, steps):
            results.append(r)
            say(r)

    if method is not None:
        reg.get("methods", method)
        owners = [reg.entry("methods", method).plugin]
        plan_of: dict[str, list[str]] = {"methods": [method]}
    else:
        if plugin is not None and plugin not in reg.plugins:
            raise XbenchError(f"unknown plugin '{plugin}'; installed: {', '.join(sorted(reg.plugins))}")
        owners = [plugin] if plugin else sorted(reg.plugins)
        plan_of = {}
        for owner in owners:
            for kind, names in reg.registered_by(owner).items():
                plan_of.setdefault(kind, []).extend(names)
    for owner in owners:
        add(f"plugin '{owner}'", registration_steps(owner))
    tasks = [reg.get("tasks", t) for t in reg.names("tasks")]
    for kind in ("students", "teachers"):
        for name in plan_of.get(kind, []):
            use = next((t.name for t in tasks if t.student == name or name == t.default_teacher
                        or t.name in getattr(reg.get(kind, name), "default_for", ())), None)
            spec = reg.get(kind, name)
            use = use or ("detection" if "snippets" in spec.taps else
                          "anticipation" if "text" in spec.modalities else "recognition")
            add(f"{kind[:-1]} '{name}'", model_steps(reg, kind, name, data_root, use))
    for name in plan_of.get("losses", []):
        add(f"loss '{name}'", loss_steps(reg, name))
    for name in plan_of.get("datasets", []):
        add(f"dataset '{name}'", dataset_steps(reg, name, data_root))
    for name in plan_of.get("tasks", []):
        add(f"task '{name}'", task_steps(reg, name, data_root))
    for name in plan_of.get("methods", []):
        spec = reg.get("methods", name)
        fits = [t.name for t in tasks if spec.tasks is None or t.name in spec.tasks]
        if task is not None:
            reg.get("tasks", task)
            fits = [task]
        for t in fits:
            add(f"method '{name}' on {t}", method_steps(reg, name, t, data_root))
    return results


# ----------------------------------------------------------------------------- pytest plugin

try:
    import pytest
except ImportError:  # the kit without pytest: xbench check
    pytest = None

if pytest is not None:

    @pytest.fixture(scope="session")
    def xbench_data(tmp_path_factory) -> Path:
        """A folder for the ``tiny`` synthetic data, generated on first use (seconds)."""
        return tmp_path_factory.mktemp("xbench-data")

    @pytest.fixture
    def xbench_registry(monkeypatch, tmp_path, xbench_data):
        """A fresh plugin manager with every installed plugin loaded (yours included), an empty
        XBENCH_HOME for this test, so nothing it stores outlives it, and XBENCH_DATA at the
        session's data folder (``xbench_data``)."""
        from xbench.registry import build_registry

        monkeypatch.setenv("XBENCH_HOME", str(tmp_path / "xbench-home"))
        monkeypatch.setenv("XBENCH_DATA", str(xbench_data))
        return build_registry()

    @pytest.fixture
    def xbench_check(xbench_registry, xbench_data):
        """``xbench_check(plugin=..., method=..., task=...)``: run the conformance checks and fail
        the test with one line per failed check; returns the :class:`CheckResult` list."""

        def check(plugin: str | None = None, method: str | None = None, task: str | None = None):
            results = plugin_checks(xbench_registry, xbench_data, plugin=plugin, method=method, task=task)
            failed = [r for r in results if r.ok is False]
            if failed:
                pytest.fail("\n".join(r.line() for r in failed), pytrace=False)
            return results

        return check
