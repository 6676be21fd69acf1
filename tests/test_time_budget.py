"""A time-based budget is a tier of its own: the clock ends its runs as complete, the records
name the device, and a table never mixes devices under it."""

from __future__ import annotations

import dataclasses

import torch

from xbench.config import RunConfig, load_tiers, replace_options
from xbench.leaderboard import build
from xbench.run import execute, plan
from xbench.testing import micro_tier


def test_a_time_budget_ends_runs_as_complete_and_tables_split_by_device(registry, data_root, monkeypatch):
    monkeypatch.setenv("XBENCH_CLOCK_LIMIT", "off")  # the safety net is off; a time budget is no safety net
    tier = replace_options(micro_tier(load_tiers()["smoke"]),
                           {"name": "no-time", "time_budget": True, "max_seconds": 1e-9}, "tier")
    cfg = RunConfig(method="student", task="recognition", budget="no-time")
    rec = execute(plan(registry, cfg, {"no-time": tier}), 0, device=torch.device("cpu"), data_root=data_root)
    # the budget was spent before the first step: the run is over, not cut short
    assert (rec.method_stage.steps, rec.method_stage.stopped_by, rec.status) == (0, "time_budget", "complete")
    other = dataclasses.replace(rec, id=rec.id + "x", env={**rec.env, "device": "cuda:H200"})
    tables = build([rec, other])
    assert sorted(t.tier for t in tables) == ["no-time on cpu:x86_64", "no-time on cuda:H200"]


def test_under_a_time_budget_every_run_pays_its_own_stages(registry, data_root, monkeypatch):
    """The stage caches are off: a cached teacher or pretrain would leave a later method more of
    the clock than the run that computed it."""
    tier = replace_options(micro_tier(load_tiers()["smoke"]),
                           {"name": "hour", "time_budget": True, "max_seconds": 1e6}, "tier")

    def sources(method, task):
        cfg = RunConfig(method=method, task=task, budget="hour",
                        task_options={"meteor": False} if task == "anticipation" else {})
        rec = execute(plan(registry, cfg, {"hour": tier}), 0, device=torch.device("cpu"), data_root=data_root)
        return [(s.stage, s.source) for s in rec.budget.stages if s.stage in ("teacher", "pretrain")]

    assert sources("kd", "recognition") == sources("kd", "recognition") == [("teacher", "computed")]
    assert sources("student", "anticipation") == sources("student", "anticipation") == [("pretrain", "computed")]
