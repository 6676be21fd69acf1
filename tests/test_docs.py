"""The plugin API reference is generated from the code, every hook is documented, and every hook
is exercised by a test."""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest

from xbench import docs
from xbench.registry import KINDS, build_registry

REPO = Path(__file__).resolve().parents[1]


def test_the_committed_reference_is_the_generated_one():
    assert (REPO / "docs" / "reference.md").read_text() == docs.reference(), \
        "docs/reference.md is stale: python -m xbench.docs > docs/reference.md"


def test_every_hook_is_documented_and_has_a_registry():
    names = [name for name, _ in docs.hooks()]
    assert names == [hook for hook, _ in KINDS.values()]
    for name, fn in docs.hooks():
        doc = inspect.cleandoc(fn.__doc__ or "")
        assert doc.startswith("Register ") and len(doc) > 60, f"hook {name} is not documented"
        assert f"### `{name}(" in docs.reference()


def test_every_hook_appears_in_a_test_besides_this_file():
    sources = {p.name: p.read_text() for p in (REPO / "tests").glob("test_*.py") if p.name != "test_docs.py"}
    for name, _ in docs.hooks():
        assert any(name in text for text in sources.values()), f"no test uses hook {name}"


SPECS = {
    "teachers": 'TeacherSpec(name="{n}", description="d", factory=lambda ctx: None, modalities=("audio",))',
    "students": 'StudentSpec(name="{n}", description="d", factory=lambda ctx: None)',
    "losses": 'LossSpec(name="{n}", description="d", factory=lambda o, d: None)',
    "datasets": 'DatasetSpec(name="{n}", description="d", factory=lambda o, root: None, modalities=("rgb",))',
    "tasks": 'TaskSpec(name="{n}", description="d", factory=lambda o: None, student="video-cnn", '
             'default_teacher="audio-cnn")',
    "methods": 'MethodSpec(name="{n}", description="d", terms=lambda o: [])',
}


@pytest.mark.parametrize("kind", list(KINDS))
def test_each_hook_registers_a_spec_owned_by_its_plugin(add_plugin, kind):
    hook = KINDS[kind][0]
    add_plugin(f"via_{kind}", f"""
        from xbench import hookimpl
        from xbench.specs import DatasetSpec, LossSpec, MethodSpec, StudentSpec, TaskSpec, TeacherSpec

        @hookimpl
        def {hook}(register):
            register({SPECS[kind].format(n="hook-" + kind)})
    """)
    reg = build_registry()
    assert reg.entry(kind, f"hook-{kind}").plugin == f"via_{kind}"
    assert reg.registered_by(f"via_{kind}") == {kind: [f"hook-{kind}"]}


def test_no_function_of_the_core_is_longer_than_a_screen():
    """A function longer than 80 lines is a list of named steps waiting to be split."""
    import ast

    long = []
    for path in sorted((REPO / "xbench").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.end_lineno - node.lineno >= 80:
                long.append(f"{path.relative_to(REPO)}:{node.lineno} {node.name} ({node.end_lineno - node.lineno + 1})")
    assert long == []


def test_no_project_file_points_at_a_file_outside_the_repository():
    texts = [p for p in (*REPO.glob("*.md"), *REPO.glob("xbench/**/*.py"), *REPO.glob("plugins/*/*.md"),
                         *REPO.glob("plugins/*/xbench_*/*.py"), *REPO.glob("docs/*.md"),
                         *REPO.glob("xbench/benchmarks/**/*.yaml"), *REPO.glob("benchmarks/**/*"))
             if p.is_file() and p.suffix in (".py", ".md", ".yaml", ".toml")]
    assert [str(p.relative_to(REPO)) for p in texts if "METHODS.md" in p.read_text()
            or "DESIGN.md" in p.read_text()] == []
