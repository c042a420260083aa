import json
from dataclasses import dataclass

import pytest
import torch

from edgetune.models import build_vit
from edgetune.motivation.train import EarlyExitViT, train_early_exit
from edgetune.runs import Checkpointer, RunResult, atomic_write, cached, config_hash, load_weights, save_weights


@dataclass(frozen=True)
class Cfg:
    lr: float = 0.1
    steps: int = 3


def test_config_hash_is_canonical():
    assert config_hash({"a": 1, "b": (1, 2)}) == config_hash({"b": [1, 2], "a": 1})
    assert config_hash(Cfg()) == config_hash({"lr": 0.1, "steps": 3})
    assert config_hash(Cfg()) != config_hash(Cfg(lr=0.2))
    assert len(config_hash(Cfg())) == 16
    with pytest.raises(TypeError, match="must be a dataclass or a dict, got int"):
        config_hash(3)


def test_cached_computes_once_reuses_and_forces(tmp_path):
    calls = []

    def compute(folder):
        calls.append(folder)
        (folder / "artifact.txt").write_text("x")
        return RunResult(stage="s", config={"lr": 0.1}, seed=0, metrics={"acc": 0.5 + len(calls)})

    first, folder = cached("s", Cfg(), compute, cache_dir=tmp_path)
    second, _ = cached("s", Cfg(), compute, cache_dir=tmp_path)
    assert len(calls) == 1 and second.metrics == first.metrics == {"acc": 1.5}
    assert folder.name == first.key == f"s-{config_hash(Cfg())}"
    assert json.loads((folder / "result.json").read_text())["metrics"] == {"acc": 1.5}
    third, _ = cached("s", Cfg(), compute, force=True, cache_dir=tmp_path)
    assert len(calls) == 2 and third.metrics == {"acc": 2.5}
    other, other_folder = cached("s", Cfg(lr=0.2), compute, cache_dir=tmp_path)
    assert len(calls) == 3 and other_folder != folder


def test_a_failing_stage_leaves_no_result(tmp_path):
    def broken(folder):
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        cached("s", Cfg(), broken, cache_dir=tmp_path)
    assert not list(tmp_path.glob("*/result.json"))
    with pytest.raises(ValueError, match="stage name 'a/b'"):
        cached("a/b", Cfg(), broken, cache_dir=tmp_path)


def test_atomic_write_keeps_the_old_file_on_error(tmp_path):
    target = tmp_path / "f.txt"
    target.write_text("old")

    def half_write(tmp):
        tmp.write_text("new, partial")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        atomic_write(target, half_write)
    assert target.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["f.txt"]


def test_result_schema_round_trip():
    r = RunResult(stage="s", config={"a": 1}, seed=42, history=[{"step": 1, "loss": 0.5}], params_total=10)
    assert RunResult.from_dict(json.loads(json.dumps(r.to_dict()))) == r
    with pytest.raises(ValueError, match=r"fields \['bogus'\]"):
        RunResult.from_dict({**r.to_dict(), "bogus": 1})


def test_weights_round_trip(tmp_path):
    a, b = build_vit("edge-tiny", 5), build_vit("edge-tiny", 5)
    save_weights(a, tmp_path / "w.safetensors")
    load_weights(b, tmp_path / "w.safetensors")
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values(), strict=True))
    with pytest.raises(FileNotFoundError, match="no weights at"):
        load_weights(b, tmp_path / "missing.safetensors")


def test_checkpointer_keeps_the_newest(tmp_path):
    model = torch.nn.Linear(2, 2)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    ckpt = Checkpointer(tmp_path, every=2, keep=2)
    saved = [ckpt.maybe_save(s, model, opt, None, [{"step": s}]) for s in range(1, 8)]
    assert [p is not None for p in saved] == [False, True, False, True, False, True, False]
    assert [p.name for p in ckpt.checkpoints()] == ["ckpt-00000004", "ckpt-00000006"]
    step, history = ckpt.restore(model, opt, None)
    assert step == 6 and history == [{"step": 6}]
    with pytest.raises(ValueError, match="every >= 1"):
        Checkpointer(tmp_path, every=0)


def _train(folder, stop_after=None):
    torch.manual_seed(0)
    model = EarlyExitViT(build_vit("edge-tiny", 4))
    data = (torch.rand(64, 3, 32, 32), torch.randint(0, 4, (64,)))
    kwargs = dict(
        steps=12,
        batch_size=8,
        lr=1e-3,
        weight_decay=0.05,
        seed=0,
        checkpoint_every=5,
        device=torch.device("cpu"),
        config={},
    )
    result = train_early_exit(model, data, folder=folder, stop_after=stop_after, **kwargs)
    return model, result


def test_interrupted_training_resumes_to_the_same_weights(tmp_path):
    straight, straight_run = _train(tmp_path / "a")
    with pytest.raises(KeyboardInterrupt):
        _train(tmp_path / "b", stop_after=7)  # dies after step 7; the last checkpoint is step 5
    assert [p.name for p in Checkpointer(tmp_path / "b" / "checkpoints", 5).checkpoints()] == ["ckpt-00000005"]
    resumed, resumed_run = _train(tmp_path / "b")
    for (name, a), b in zip(straight.state_dict().items(), resumed.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    assert [h["loss"] for h in resumed_run.history] == [h["loss"] for h in straight_run.history]
    assert len(resumed_run.history) == 12


def _weights_stage(calls):
    def compute(folder):
        calls.append(folder)
        save_weights(torch.nn.Linear(64, 64), folder / "model.safetensors")
        return RunResult(stage="s", config={}, seed=0, metrics={"acc": float(len(calls))})

    return compute


def _garble(path):
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one byte inside the tensors: safetensors itself would load it without complaint
    path.write_bytes(bytes(data))


CORRUPTIONS = {
    "weights truncated": lambda f: (f / "model.safetensors").write_bytes((f / "model.safetensors").read_bytes()[:100]),
    "weights emptied": lambda f: (f / "model.safetensors").write_bytes(b""),
    "weights garbled": lambda f: _garble(f / "model.safetensors"),
    "weights deleted": lambda f: (f / "model.safetensors").unlink(),
    "result truncated": lambda f: (f / "result.json").write_text((f / "result.json").read_text()[:40]),
    "result an empty object": lambda f: (f / "result.json").write_text("{}"),
    "result a list": lambda f: (f / "result.json").write_text("[1, 2]"),
    "result not UTF-8": lambda f: (f / "result.json").write_bytes(b"\xff\xfe{"),
    "checksums not a mapping": lambda f: (f / "result.json").write_text(
        json.dumps({**json.loads((f / "result.json").read_text()), "checksums": None})
    ),
    "checksums absent": lambda f: (f / "result.json").write_text(
        json.dumps({k: v for k, v in json.loads((f / "result.json").read_text()).items() if k != "checksums"})
    ),
}
NOTICES = {
    "weights truncated": "model.safetensors does not match its checksum",
    "weights emptied": "model.safetensors does not match its checksum",
    "weights garbled": "model.safetensors does not match its checksum",
    "weights deleted": "model.safetensors is missing",
    "result truncated": "result.json unreadable (JSONDecodeError",
    "result an empty object": "result.json unreadable (TypeError",
    "result a list": "result.json unreadable (",
    "result not UTF-8": "result.json unreadable (UnicodeDecodeError",
    "checksums not a mapping": "result.json unreadable (AttributeError",
    "checksums absent": "result.json carries no checksums (written by an earlier version; it cannot be verified)",
}


@pytest.mark.parametrize("corruption", CORRUPTIONS, ids=CORRUPTIONS)
def test_a_damaged_cache_entry_is_recomputed_with_a_notice_naming_the_file(tmp_path, corruption, capsys):
    calls = []
    first, folder = cached("s", Cfg(), _weights_stage(calls), cache_dir=tmp_path)
    assert set(first.checksums) == {"model.safetensors"} and len(first.checksums["model.safetensors"]) == 64
    CORRUPTIONS[corruption](folder)
    again, same = cached("s", Cfg(), _weights_stage(calls), cache_dir=tmp_path)
    assert len(calls) == 2 and same == folder and again.metrics == {"acc": 2.0}
    err = capsys.readouterr().err
    assert f"edgetune: cache entry {folder}: {NOTICES[corruption]}" in err and err.count("\n") == 1
    assert "Traceback" not in err
    reused, _ = cached("s", Cfg(), _weights_stage(calls), cache_dir=tmp_path)  # intact again: reused quietly
    assert len(calls) == 2 and reused.metrics == {"acc": 2.0} and capsys.readouterr().err == ""


@pytest.mark.parametrize("damage", ["truncate state", "garble weights", "delete checksums"])
def test_a_damaged_checkpoint_is_skipped_for_the_one_before(tmp_path, damage, capsys):
    model = torch.nn.Linear(2, 2)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    ckpt = Checkpointer(tmp_path, every=2, keep=2)
    for step in (2, 4):
        with torch.no_grad():
            model.weight.fill_(step)
        ckpt.save(step, model, opt, None, [{"step": step}])
    newest = ckpt.checkpoints()[-1]
    if damage == "truncate state":
        (newest / "state.pt").write_bytes((newest / "state.pt").read_bytes()[:50])
    elif damage == "garble weights":
        _garble(newest / "model.safetensors")
    else:
        (newest / "checksums.json").unlink()
    step, history = ckpt.restore(model, opt, None)
    err = capsys.readouterr().err
    assert (step, history) == (2, [{"step": 2}]) and torch.all(model.weight == 2)
    if damage == "delete checksums":  # from before checkpoints carried checksums, or cut short: not trusted
        assert "checksums.json is missing (cannot be verified)" in err
    assert f"edgetune: checkpoint {newest}: " in err and "skipping it" in err and "Traceback" not in err
    for checkpoint in ckpt.checkpoints():
        (checkpoint / "state.pt").write_bytes(b"")
    assert ckpt.restore(model, opt, None) == (0, [])  # nothing trustworthy left: a fresh start


@dataclass(frozen=True)
class _Cfg:
    seed: int = 0
    steps: int = 3
    lr: float = 0.1
    every: int = 10
    device: str = "cpu"


def _stages():
    from edgetune.runs.stages import Stage

    first = Stage("probe-first", reads=("seed", "steps"), unkeyed=("every",))
    second = Stage("probe-second", reads=("lr",), after=(first,))
    return first, second


def test_a_stage_computes_from_its_own_frozen_fields_only(tmp_path, monkeypatch):
    import dataclasses

    monkeypatch.setenv("EDGETUNE_RUNS", str(tmp_path))
    first, second = _stages()
    seen = {}

    def compute(cfg, folder):
        seen["fields"] = sorted(f.name for f in dataclasses.fields(cfg))
        with pytest.raises(dataclasses.FrozenInstanceError):
            cfg.steps = 5
        with pytest.raises(AttributeError, match="stage 'probe-first' does not read 'lr'.*reads seed, steps"):
            _ = cfg.lr
        return RunResult(stage="probe-first", config={"ignored": 1}, seed=cfg.seed, metrics={"x": cfg.steps})

    result, folder = first.run(_Cfg(), compute)
    assert seen["fields"] == ["device", "every", "seed", "steps"]
    assert result.config == {"seed": 0, "steps": 3, "scenes_version": result.config["scenes_version"], "numerics": 2}
    assert folder.name == first.folder_name(_Cfg()) and folder.parent == tmp_path / "cache"


def test_a_stage_refuses_a_compute_that_captures_the_whole_config(tmp_path, monkeypatch):
    monkeypatch.setenv("EDGETUNE_RUNS", str(tmp_path))
    first, _ = _stages()
    cfg = _Cfg()

    def compute(sub, folder):
        return RunResult(stage="probe-first", config={}, seed=cfg.seed)

    with pytest.raises(TypeError, match="captures the whole config"):
        first.run(cfg, compute)
    assert not (tmp_path / "cache").exists()  # refused before anything ran


def test_stage_keys_hold_own_fields_upstream_keys_and_versions_not_the_device():
    import dataclasses

    from edgetune.data.scenes import SCENES_VERSION

    first, second = _stages()
    base = _Cfg()
    assert second.key(base) == {
        "lr": 0.1,
        "upstream": {"probe-first": first.folder_name(base)},
        "scenes_version": SCENES_VERSION,
        "numerics": 2,
    }
    changes = {"seed": 1, "steps": 4, "lr": 0.2, "every": 11, "device": "cuda"}
    keys_first = {n for n, v in changes.items() if first.key(dataclasses.replace(base, **{n: v})) != first.key(base)}
    keys_second = {n for n, v in changes.items() if second.key(dataclasses.replace(base, **{n: v})) != second.key(base)}
    assert keys_first == {"seed", "steps"} and keys_second == {"seed", "steps", "lr"}
    with pytest.raises(ValueError, match="unknown version name"):
        from edgetune.runs.stages import stage_key

        stage_key({}, versions=("nosuch",))


def test_a_checkpoint_path_keys_a_stage_by_its_content(tmp_path, monkeypatch):
    from dataclasses import dataclass as frozen_dataclass

    from edgetune.runs.stages import Stage

    @frozen_dataclass(frozen=True)
    class WithModel:
        model: str = "model/ckpt.safetensors"
        seed: int = 0

    monkeypatch.setenv("EDGETUNE_ROOT", str(tmp_path))
    (tmp_path / "model").mkdir()
    ckpt = tmp_path / "model" / "ckpt.safetensors"
    ckpt.write_bytes(b"weights one")
    stage = Stage("probe", reads=("model", "seed"))
    first = stage.key(WithModel())
    assert first["model"].startswith("sha256:")
    ckpt.write_bytes(b"weights two")  # replaced at the same path: a new key
    assert stage.key(WithModel()) != first
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "ckpt.safetensors").write_bytes(b"weights two")  # the same bytes elsewhere: same key
    assert stage.key(WithModel(model=str(tmp_path / "elsewhere" / "ckpt.safetensors"))) == stage.key(WithModel())
    assert stage.key(WithModel(model="edge-tiny"))["model"] == "edge-tiny"
    (tmp_path / "top.safetensors").write_bytes(b"weights three")  # a weights file at the root, no '/' in its name
    assert stage.key(WithModel(model="top.safetensors"))["model"].startswith("sha256:")


def test_a_result_states_its_model_flop_utilization_where_the_gpu_is_known():
    from edgetune.runs.schema import RunResult, peak_tflops

    result = RunResult("s", {}, 0, flops=0.35 * 989e12 * 10, wall_time_s=10.0, device="NVIDIA H200")
    assert result.achieved_tflops == pytest.approx(0.35 * 989) and result.mfu == pytest.approx(0.35)
    again = RunResult.from_dict({**result.to_dict(), "mfu": 0.99})  # recomputed from flops and time, never trusted
    assert again.mfu == pytest.approx(0.35)
    cpu = RunResult("s", {}, 0, flops=1e12, wall_time_s=2.0, device="x86_64 CPU, 2 threads")
    assert cpu.achieved_tflops == pytest.approx(0.5) and cpu.mfu is None  # no peak known: no MFU claimed
    assert RunResult("s", {}, 0).mfu is None and RunResult("s", {}, 0, flops=1e9).achieved_tflops is None
    assert peak_tflops("NVIDIA H100 80GB HBM3") == 989.0 and peak_tflops("NVIDIA A100-SXM4-80GB") == 312.0
    assert peak_tflops("NVIDIA H100 PCIe") == 756.0 and peak_tflops("NVIDIA H200 × 4") == 4 * 989.0
