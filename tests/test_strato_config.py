"""The PEFT run config: YAML sections, dotted overrides, validation messages, the shipped example configs."""

from pathlib import Path

import pytest
import yaml

from edgetune.strato.config import PROFILES, RunConfig, config, from_dict, load_config, parse_override, to_yaml

CONFIGS = sorted((Path(__file__).resolve().parent.parent / "edgetune" / "strato" / "configs").glob("*.yaml"))


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_shipped_configs_load_and_round_trip(path):
    cfg = load_config(path)
    assert cfg.peft.method == path.stem
    assert from_dict(yaml.safe_load(to_yaml(cfg))) == cfg


def test_overrides_reach_nested_fields_with_yaml_types(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("peft:\n  method: strato\ntraining:\n  lr: 3.0e-3\n")
    cfg = load_config(
        path,
        [
            "training.lr=1e-3",
            "peft.strato.lam=0.25",
            "task.name=gsm8k",
            "model.path=null",
            "device.mixed_precision=false",
            "training.steps=7",
        ],
        seed=44,
    )
    assert cfg.training.lr == pytest.approx(1e-3) and isinstance(cfg.training.lr, float)
    assert cfg.peft.strato.lam == 0.25 and cfg.task.name == "gsm8k" and cfg.model.path is None
    assert cfg.device.mixed_precision is False and cfg.training.steps == 7 and cfg.seed == 44


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("training.lrr=1", r"unknown key\(s\) \['lrr'\] in section 'training'; accepted: .*'lr'"),
        ("training.steps=ten", r"training.steps='ten' \(str\); expected int"),
        ("training.steps=1.5", r"training.steps=1.5 \(float\); expected int"),
        ("peft.method=qlora", r"peft.method='qlora'; expected one of \('lora'"),
        ("task.name=squad", r"task.name='squad'; expected one of"),
        ("device.device_type=tpu", r"device.device_type='tpu'"),
        ("peft.strato.min_rank=32", r"min_rank/max_rank"),
        ("training=3", r"training must be a mapping"),
        ("lr", r"must look like section.key=value"),
    ],
)
def test_bad_overrides_name_the_key_and_what_is_expected(override, message):
    with pytest.raises(ValueError, match=message):
        from_dict({}, [override]) if "=" in override else parse_override(override)


def test_load_config_errors_name_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"missing.yaml does not exist; expected a YAML file"):
        load_config(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: [unclosed\n")
    with pytest.raises(ValueError, match=r"bad.yaml is not valid YAML"):
        load_config(bad)
    typo = tmp_path / "typo.yaml"
    typo.write_text("modle:\n  name: lm-tiny\n")
    with pytest.raises(ValueError, match=r"typo.yaml: unknown key\(s\) \['modle'\] in the config"):
        load_config(typo)


def test_profiles_build_one_run_config_per_task_seed_method():
    cfg = config("smoke")
    run = cfg.run_config("gsm8k", 42, "strato")
    assert isinstance(run, RunConfig) and run.task.name == "gsm8k" and run.peft.method == "strato"
    assert run.peft.strato.search_seed == cfg.seeds[0]  # one search per task, shared by the seeds
    assert config("gpu").run_config("mmlu", 43, "strato").peft.strato.search_seed is None
    paper = PROFILES["paper"].run_config("humaneval", 42, "lora")
    assert paper.task.source.endswith("HumanEval.jsonl") and paper.model.path == "model/llama"
    with pytest.raises(ValueError, match="must include 'lora'"):
        config("smoke", methods=("dora",))
