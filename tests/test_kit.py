"""The conformance kit for plugin authors: named checks, `xbench check`, the pytest fixtures."""

from __future__ import annotations

import subprocess
import sys
import textwrap

from xbench.cli import main
from xbench.registry import build_registry
from xbench.testing import plugin_checks

BROKEN = """
    import random

    import torch
    from xbench import hookimpl
    from xbench.specs import LossSpec, LossTerm, MethodSpec, StudentSpec


    class Student(torch.nn.Module):
        def __init__(self, ctx, fault):
            super().__init__()
            self.fault = fault
            self.head = torch.nn.Linear(3, ctx.num_classes)
            if fault == "random":  # its own unseeded generator: another model every time
                with torch.no_grad():
                    self.head.weight.uniform_(-1, 1, generator=torch.Generator().manual_seed(random.randrange(2**31)))

        def forward(self, inputs):
            x = inputs["rgb"].float().mean(dim=(1, 3, 4))  # (B, 3) from (B, T, C, H, W)
            logits = self.head(x)
            if self.fault == "shape":
                logits = logits[:, :3]
            if self.fault == "nan":
                logits = logits * float("nan")
            out = {"logits": logits, "feature": x}
            if self.fault == "taps":
                del out["feature"]
            return out


    def build(ctx, fault):
        if fault == "build":
            raise RuntimeError("no weights file at /nowhere/model.pt")
        return Student(ctx, fault)


    class NaNLoss(torch.nn.Module):
        def forward(self, s, t, mask=None):
            return (s.float() * float("nan")).mean()


    class Nudge(torch.nn.Module):
        def forward(self, s, t):
            import gc
            for obj in gc.get_objects():  # reach the frozen teacher and change a buffer
                if type(obj).__name__ == "AudioTeacher":
                    next(iter(obj.buffers())).add_(1.0)
            return s.float().pow(2).mean()


    @hookimpl
    def xbench_register_students(register):
        for fault in ("build", "taps", "shape", "nan", "random"):
            register(StudentSpec(name=f"bad-{fault}", description=fault,
                                 factory=lambda ctx, f=fault: build(ctx, f)))


    @hookimpl
    def xbench_register_losses(register):
        torch.nn.Linear(2, 2)  # a model built at registration: registering must stay cheap
        register(LossSpec(name="nan-loss", description="d", reads="target", factory=lambda o, d: NaNLoss()))
        register(LossSpec(name="nudge", description="d", factory=lambda o, d: Nudge()))


    @hookimpl
    def xbench_register_methods(register):
        register(MethodSpec(name="nudge", description="d", tasks=("recognition",),
                            terms=lambda o: [LossTerm("task"), LossTerm("nudge", teacher="logits")]))
        # a default taken from another setting: its KD term is a millionth of the task loss
        register(MethodSpec(name="whisper", description="d", tasks=("recognition",),
                            terms=lambda o: [LossTerm("task"), LossTerm("kd", 1e-6, teacher="logits")]))
"""


def test_a_plugin_failing_each_check_is_reported_by_the_check(add_plugin, data_root):
    add_plugin("broken", BROKEN)
    results = plugin_checks(build_registry(), data_root, plugin="broken")
    failed = [(r.check, r.subject) for r in results if r.ok is False]
    assert failed == [
        ("registers cheaply, offline", "plugin 'broken'"),
        ("builds", "student 'bad-build'"),
        ("finite backward", "student 'bad-nan'"),
        ("deterministic on CPU", "student 'bad-random'"),
        ("output shapes", "student 'bad-shape'"),
        ("forward returns its taps", "student 'bad-taps'"),
        ("finite loss and gradient", "loss 'nan-loss'"),
        ("frozen teacher unchanged", "method 'nudge' on recognition"),
        ("no inert term", "method 'whisper' on recognition"),
    ]
    details = {r.subject: r.detail for r in results if r.ok is False}
    assert details["plugin 'broken'"] == "plugin 'broken' built Linear while registering: specs hold factories"
    assert details["student 'bad-build'"] == "RuntimeError: no weights file at /nowhere/model.pt"
    assert details["student 'bad-shape'"] == "logits shape (4, 3), expected (4, 20) or (4, N, 20)"
    assert details["student 'bad-taps'"] == "forward returned no tap(s) ['feature']"
    assert details["method 'nudge' on recognition"] == (
        "plugin 'broken': method 'nudge' changed the frozen teacher's parameters or buffers")
    assert details["method 'whisper' on recognition"].startswith(
        "weighted term(s) under 1% of the task loss at the defaults: kd 0.00%")
    # what could not run after a failure is said, not passed
    assert [(r.check, r.ok) for r in results if r.subject == "student 'bad-build'"] == [
        ("builds", False), ("forward returns its taps", None), ("output shapes", None),
        ("finite backward", None), ("deterministic on CPU", None)]
    assert all(r.ok for r in results if r.subject == "loss 'nudge'")


def test_xbench_check_prints_a_line_per_check(capsys):
    assert main(["check", "--method", "kd", "--task", "recognition"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line[:40].rstrip() for line in lines] == [
        "PASS  registers cheaply, offline", "PASS  plans", "PASS  runs end to end",
        "PASS  frozen teacher unchanged", "PASS  budget obeyed", "PASS  selection on val only",
        "PASS  finite metrics", "PASS  no privileged input at evaluation", "PASS  no inert term",
        "PASS  deterministic on CPU", "10 passed, 0 failed"]
    assert lines[1] == "PASS  plans                              method 'kd' on recognition"


def test_xbench_check_fails_naming_the_check(add_plugin, capsys):
    add_plugin("broken", BROKEN)
    assert main(["check", "--plugin", "broken", "--failed-only"]) == 1
    out = capsys.readouterr().out.splitlines()
    assert out[0] == ("FAIL  registers cheaply, offline         plugin 'broken': plugin 'broken' built Linear "
                      "while registering: specs hold factories")
    assert out[-1] == "22 passed, 9 failed, 17 not run"
    assert main(["check", "--plugin", "nope"]) == 2
    assert capsys.readouterr().err.startswith("xbench: error: unknown plugin 'nope'; installed: argb, baselines")


def test_the_pytest_fixtures_check_a_plugin_from_its_own_tests(tmp_path):
    """A plugin author's test file, run by pytest in a fresh process: the fixtures come from the
    ``pytest11`` entry point of the installed xbench."""
    (tmp_path / "test_mine.py").write_text(textwrap.dedent("""
        def test_kd_conforms(xbench_check, xbench_registry):
            assert "kd" in xbench_registry.names("methods")
            results = xbench_check(method="kd", task="recognition")
            assert all(r.ok for r in results) and len(results) == 10
    """))
    out = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path)],
                         capture_output=True, text=True, cwd=tmp_path, timeout=600, check=False)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "1 passed" in out.stdout
