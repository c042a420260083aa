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
