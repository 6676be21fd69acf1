"""The steady allocator: set for runs, recorded, with an opt-out."""

from __future__ import annotations

import pytest

from xbench import alloc


@pytest.fixture(autouse=True)
def _fresh(monkeypatch):
    monkeypatch.setattr(alloc, "_state", None)
    for key in ("XBENCH_ALLOCATOR", "LD_PRELOAD", "MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_"):
        monkeypatch.delenv(key, raising=False)


def test_glibc_gets_the_steady_thresholds():
    assert alloc.state() == {"allocator": "default", "why": "not configured"}
    assert alloc.configure() == {"allocator": "glibc-steady", "source": "mallopt",
                                 "mmap_threshold": 32 * 2**20, "trim_threshold": 2**30}
    assert alloc.state() is alloc.configure()  # once per process


@pytest.mark.parametrize("env, expected", [
    ({"XBENCH_ALLOCATOR": "default"}, {"allocator": "default", "why": "XBENCH_ALLOCATOR=default"}),
    ({"LD_PRELOAD": "/usr/lib/libjemalloc.so.2"}, {"allocator": "preloaded", "LD_PRELOAD": "/usr/lib/libjemalloc.so.2"}),
    ({"MALLOC_MMAP_THRESHOLD_": "1000000"}, {"allocator": "glibc", "source": "environment",
                                             "MALLOC_MMAP_THRESHOLD_": "1000000"}),
])
def test_opt_out_preloaded_and_user_settings_are_left_alone(monkeypatch, env, expected):
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    assert alloc.configure() == expected


def test_the_run_record_says_which_allocator(capsys):
    from xbench.cli import main
    from xbench.store import ResultStore

    assert main(["run", "--method", "student", "--task", "recognition", "--budget", "smoke", "--quiet",
                 "--set", "budget.student_steps=2"]) == 0
    [rec] = ResultStore().records()
    assert rec.env["allocator"] == {"allocator": "glibc-steady", "source": "mallopt",
                                       "mmap_threshold": 32 * 2**20, "trim_threshold": 2**30}
