"""Run records made up for the tests of the tables: complete, valid records with the values given."""

from __future__ import annotations

import json
import re

from xbench.records import RunRecord


def fake(method, seed, score, *, task="recognition", tier="cpu", flops=10**12, seconds=10.0, heads=0,
         teacher=True, start=0, evaluated="student", cached=False, options=None, dataset_options=None, config_hash=None, task_options=None,
         own_stages=None, sha="abc123") -> RunRecord:
    """A run record (version 1, as the published ones) with the values the leaderboard reads;
    ``own_stages``: the method's stages as (name, steps), instead of one student stage."""
    def stage(name, steps, samples, secs, fl, forwards, source="computed"):
        return {"stage": name, "max_steps": steps, "steps": steps, "samples": samples, "seconds": secs,
                "flops": fl, "flops_per_step": fl // max(steps, 1), "teacher_forwards": forwards,
                "source": source, "memory_kind": "host-rss", "peak_memory_mb": 500.0 + heads,
                "stopped_by": "max_steps", "evaluations": 2}

    stages = []
    if teacher:
        stages += [stage("teacher", 30, 960, 4.0, 2 * 10**11, 0, "cache" if cached else "computed"),
                   stage("teacher-inference", 0, 100, 1.0, 0, 100, "cache" if cached else "computed")]
    for name, steps in own_stages or [("student", 50)]:
        stages.append(stage(name, steps, 32 * steps, seconds, flops, 0))
    return RunRecord.from_json({
        "schema": 1, "dataset": "synth", "teacher": None, "plugins": {},
        "data": {"root": "", "manifest_sha256": "m", "sizes": {"train": 100, "val": 10, "test": 10}},
        # a name from a plugin may hold any character; the record's id keeps the safe ones
        "id": re.sub(r"[^A-Za-z0-9.+-]+", "_", f"{method}-{task}-{tier}-s{seed}-{start:04d}").strip("_.+-"),
        "tier": tier, "task": task, "method": method,
        "seed": seed, "config_hash": config_hash or f"h-{method}-{json.dumps(options, sort_keys=True)}", "main_metric": "top1",
        "metrics": {"top1": score}, "evaluated": evaluated, "eval_modalities": ["audio" if evaluated == "teacher" else "rgb"],
        "params": {"student": 1000, "heads": heads, "teacher": 3000},
        "config": {"dataset": "synth", "teacher": "audio-cnn" if teacher else None, "task_options": task_options or {},
                   "dataset_options": dataset_options or {}, "method_options": options or {}},
        "selection": {"split": "val", "metric": "top1", "step": 50, "value": score, "metrics": {}},
        "budget": {"stages": stages, "tier": {"name": tier}, "totals": {
            "steps": sum(s["steps"] for s in stages), "samples": sum(s["samples"] for s in stages),
            "teacher_forwards": 100 if teacher else 0, "flops": flops + (2 * 10**11 if teacher else 0),
            "seconds": seconds + (5.0 if teacher else 0.0), "peak_memory_mb": 500.0 + heads, "stopped_by": None}},
        "env": {"git_sha": sha, "device": "cpu:x86_64", "torch": "2.14.1", "python": "3.11.7", "threads": 2},
        "started": f"2026-01-01T00:{start // 60:02d}:{start % 60:02d}+00:00",
        "finished": f"2026-01-01T00:{(start + 10) // 60:02d}:{(start + 10) % 60:02d}+00:00",
    }, "fake")
