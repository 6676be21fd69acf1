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
