"""Typed configuration: tiers, run configs and --set overrides."""

from __future__ import annotations

import pytest
import yaml

from xbench.config import RunConfig, Tier, coerce, from_mapping, load_tiers, load_yaml, parse_set
from xbench.errors import ConfigError


def test_budget_tiers_load():
    tiers = load_tiers()
    assert sorted(tiers) == ["cpu", "gpu", "paper-argb", "paper-ccd", "paper-lmkd-egtea", "paper-lmkd-ek55", "paper-mnf-csc", "paper-xkd",
                             "smoke"]
    smoke = tiers["smoke"]
    assert (smoke.batch_size, smoke.student_steps, smoke.teacher_steps, smoke.eval_every) == (16, 30, 30, 15)
    assert (smoke.optimizer.name, smoke.optimizer.lr, smoke.schedule.name) == ("adamw", 0.003, "cosine")
    assert smoke.dataset == {"size": "tiny"}
    cpu = tiers["cpu"]
    assert (cpu.batch_size, cpu.student_steps, cpu.teacher_steps, cpu.pretrain_steps) == (32, 250, 300, 250)
    assert smoke.pretrain_steps == 15
    assert (smoke.probe_steps, smoke.finetune_steps, cpu.probe_steps, cpu.finetune_steps) == (30, 30, 500, 250)


def test_parse_set_types_values():
    assert parse_set(["dataset.pixel_noise=0.2", "method.T=2", "budget.student_steps=5",
                      "task.frames=null", "dataset.audio_noise_kind=white"]) == {
        "dataset_options": {"pixel_noise": 0.2, "audio_noise_kind": "white"},
        "method_options": {"T": 2}, "budget_options": {"student_steps": 5},
        "task_options": {"frames": None},
    }


@pytest.mark.parametrize("item, message", [
    ("noequals", "--set noequals: expected SECTION.KEY=VALUE with SECTION one of dataset, task, method, budget, teacher, student, hparams"),
    ("nosection=1", "--set nosection=1: expected SECTION.KEY=VALUE with SECTION one of dataset, task, method, budget, teacher, student, hparams"),
    ("model.x=1", "--set model.x=1: unknown section 'model' (known: dataset, task, method, budget, teacher, student, hparams)"),
])
def test_parse_set_errors(item, message):
    with pytest.raises(ConfigError) as err:
        parse_set([item])
    assert str(err.value) == message


def test_unknown_key_and_wrong_type_name_the_key():
    with pytest.raises(ConfigError) as err:
        from_mapping(RunConfig, {"method": "kd", "task": "x", "sedes": [1]}, "run.yaml")
    assert str(err.value) == ("run.yaml: unknown key 'sedes' (known: budget, budget_options, dataset, "
                              "dataset_options, device, hparams, method, method_options, regime, seeds, student, student_options, task, task_options, "
                              "teacher, teacher_options, trial, tuning)")
    with pytest.raises(ConfigError) as err:
        from_mapping(RunConfig, {"method": "kd", "task": "x", "seeds": ["a"]}, "run.yaml")
    assert str(err.value) == "run.yaml: key 'seeds'[0]: expected int, got 'a'"
    with pytest.raises(ConfigError) as err:
        from_mapping(RunConfig, {"method": "kd", "task": "x", "device": "tpu"}, "run.yaml")
    assert str(err.value) == "run.yaml: key 'device': expected 'cpu' | 'cuda' | 'auto', got 'tpu'"


def test_coerce_accepts_int_for_float_but_not_bool_for_int():
    assert coerce(2, float, "x") == 2.0
    with pytest.raises(ConfigError, match=r"^x: expected int, got True$"):
        coerce(True, int, "x")


def test_bad_tier_file_names_file_and_line(tmp_path):
    bad = tmp_path / "budgets.yaml"
    bad.write_text("smoke:\n  batch_size: 4\n  student_steps: [1,\n")
    with pytest.raises(ConfigError, match=r"budgets.yaml:4: bad YAML"):
        load_tiers(bad)
    bad.write_text("smoke:\n  batch_size: four\n")
    with pytest.raises(ConfigError) as err:
        load_tiers(bad)
    assert str(err.value) == f"{bad}: tier 'smoke': key 'batch_size': expected int, got 'four'"


def test_tier_validation():
    with pytest.raises(ConfigError, match="student_steps must be positive"):
        from_mapping(Tier, {"name": "t", "description": "", "batch_size": 1, "student_steps": 0,
                            "teacher_steps": 0, "max_seconds": 1, "eval_every": 1}, "t")


@pytest.mark.parametrize(("value", "expected"), [
    ("1e-3", 0.001), ("1E5", 100000.0), ("-.5", -0.5), ("1e308", 1e308), (3, 3.0),
    (float("nan"), "x: expected a finite number, got nan"), (float("inf"), "x: expected a finite number, got inf"),
    ("1e999", "x: expected a finite number, got inf"), ("ten", "x: expected float, got 'ten'"),
])
def test_floats_are_finite_and_may_be_written_as_yaml_1_2_writes_them(value, expected):
    if isinstance(expected, str):
        with pytest.raises(ConfigError) as err:
            coerce(value, float, "x")
        assert str(err.value) == expected
    else:
        assert coerce(value, float, "x") == expected


@pytest.mark.parametrize(("section", "values", "message"), [
    ("optimizer", {"lr": -1}, "need lr > 0, weight_decay >= 0 and 0 <= momentum < 1"),
    ("optimizer", {"lr": 0}, "need lr > 0, weight_decay >= 0 and 0 <= momentum < 1"),
    ("optimizer", {"weight_decay": -1e-4}, "need lr > 0, weight_decay >= 0 and 0 <= momentum < 1"),
    ("optimizer", {"momentum": 1}, "need lr > 0, weight_decay >= 0 and 0 <= momentum < 1"),
    ("schedule", {"warmup_steps": -1}, "warmup_steps must be >= 0"),
])
def test_a_tier_s_optimizer_and_schedule_are_validated_when_read(tmp_path, section, values, message):
    path = tmp_path / "budgets.yaml"
    path.write_text(yaml.safe_dump({"t": {"description": "", "batch_size": 4, "student_steps": 2, "teacher_steps": 0,
                                          "max_seconds": 60, "eval_every": 1, section: values}}))
    with pytest.raises(ConfigError) as err:
        load_tiers(path)
    assert str(err.value) == f"{path}: tier 't': key '{section}': {message}"


def test_a_config_that_is_not_utf8_is_one_line_naming_the_file(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_bytes(b"method: kd\ntask: \xff\xfe\n")
    with pytest.raises(ConfigError) as err:
        load_yaml(path)
    assert str(err.value) == f"{path}: not UTF-8 text (byte 17)"


LAUGHS = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{n}: &{n} [*{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}]\n" for p, n in zip("abcdefgh", "bcdefghi"))


@pytest.mark.parametrize(("text", "message"), [
    (LAUGHS, "more than 100,000 values once its aliases are expanded"),
    ("x: " + "[" * 20_000 + "]" * 20_000 + "\n", "nested deeper than 64 levels"),
    ("x: " + "[" * 70 + "]" * 70 + "\n", "nested deeper than 64 levels"),
    ("x: !!python/object/apply:os.system [echo]\n", None),
])
def test_hostile_yaml_is_refused_in_one_line_before_anything_is_built(tmp_path, text, message):
    path = tmp_path / "run.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as err:
        load_yaml(path)
    if message is None:  # a Python tag: the safe loader's own refusal, with its line
        assert str(err.value).startswith(f"{path}:1: bad YAML: could not determine a constructor")
    else:
        assert str(err.value) == f"{path}: {message}"


def test_a_file_over_the_size_limit_is_not_read(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_bytes(b"# " + b"x" * (1 << 20) + b"\n")
    with pytest.raises(ConfigError) as err:
        load_yaml(path)
    assert str(err.value) == f"{path}: larger than 1 MiB: not a config"


def test_a_long_wrong_value_is_cut_in_the_message():
    with pytest.raises(ConfigError) as err:
        coerce(list(range(1000)), int, "x")
    assert str(err.value) == "x: expected int, got " + repr(list(range(1000)))[:77] + "..."
