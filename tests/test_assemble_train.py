"""The assembling entry point: the phase chain, auto-resume, and DDP (2 processes, gloo on CPU) against one process
with the same effective batch."""

import json
import os
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

from edgetune.assemble import train
from edgetune.assemble.__main__ import main, parse
from edgetune.assemble.model import Division, stage_state
from edgetune.assemble.train import AssembleConfig, run

TINY = dict(
    model="edge-tiny",
    depths=(2, 2),
    num_classes=4,
    train_size=128,
    test_size=32,
    batch_size=8,
    checkpoint_every=2,
    lr=1e-3,
)


def _weights(out):
    return load_file(str(out / "model.safetensors"))


def test_phase_chain_pt_mt_ft_e2e(tmp_path):
    pt = run(AssembleConfig("PT", str(tmp_path / "pt"), steps=3, **TINY))
    assert pt.config["division"] == [1, 1] and pt.flops > 0 and pt.params_trainable == pt.params_total
    mts = [
        run(AssembleConfig("MT", str(tmp_path / f"mt{i}"), idx=i, meta=str(tmp_path / "pt"), steps=3, **TINY))
        for i in range(2)
    ]
    meta = _weights(tmp_path / "pt")
    mt0 = _weights(tmp_path / "mt0")
    assert mts[0].config["division"] == [2, 1] and mts[0].params_trainable < mts[0].params_total
    # MT 0 left the meta model's stage 1 (its block, norm and head) exactly as PT trained it
    assert torch.equal(mt0["blocks.2.mlp.fc1.weight"], meta["blocks.1.mlp.fc1.weight"])
    assert torch.equal(mt0["head.weight"], meta["head.weight"]) and not torch.equal(mt0["cls_token"], meta["cls_token"])
    ft = run(
        AssembleConfig(
            "FT", str(tmp_path / "ft"), incubation=(str(tmp_path / "mt0"), str(tmp_path / "mt1")), steps=2, **TINY
        )
    )
    e2e = run(AssembleConfig("E2E", str(tmp_path / "e2e"), steps=2, **TINY))
    assert ft.config["division"] == e2e.config["division"] == [2, 2] and ft.params_total == e2e.params_total
    again = run(AssembleConfig("E2E", str(tmp_path / "e2e"), steps=2, **TINY))  # finished: returns at once
    assert again.metrics == e2e.metrics and again.history == e2e.history


def _reference_and_crashed(tmp_path, monkeypatch, settings=TINY):
    """A finished 6-step run in a/, and the same run in b/ crashed after its step-4 checkpoint."""
    run(AssembleConfig("E2E", str(tmp_path / "a"), steps=6, **settings))
    schedule = train.warmup_cosine

    def crash_at_step_5(step, warmup, steps, **kw):
        if step == 5:
            raise KeyboardInterrupt("simulated crash after the step-4 checkpoint")
        return schedule(step, warmup, steps, **kw)

    monkeypatch.setattr(train, "warmup_cosine", crash_at_step_5)
    with pytest.raises(KeyboardInterrupt):
        run(AssembleConfig("E2E", str(tmp_path / "b"), steps=6, **settings))
    monkeypatch.setattr(train, "warmup_cosine", schedule)


def test_resume_after_a_crash_reaches_the_same_weights(tmp_path, monkeypatch):
    _reference_and_crashed(tmp_path, monkeypatch)
    resumed = run(AssembleConfig("E2E", str(tmp_path / "b"), steps=6, **TINY))
    assert [h["step"] for h in resumed.history] == [1, 2, 3, 4, 5, 6]
    a, b = _weights(tmp_path / "a"), _weights(tmp_path / "b")
    assert all(torch.equal(a[k], b[k]) for k in a)


def _cli(extra):
    return [
        "--phase",
        "E2E",
        "--model",
        "edge-tiny",
        "--depths",
        "2",
        "2",
        "--num-classes",
        "4",
        "--train-size",
        "128",
        "--test-size",
        "32",
        "--steps",
        "3",
        "--lr",
        "1e-3",
        "--checkpoint-every",
        "10",
        *extra,
    ]


def test_two_processes_match_one_with_the_same_effective_batch(tmp_path):
    """DDP over gloo (2 × batch 4) and gradient accumulation (1 × batch 4 × 2) against one process of batch 8.
    The per-step losses must agree to 1e-6; weights to 5e-5 after 3 AdamW steps (measured 1.0e-5: only the float
    reduction order differs, and Adam's normalized first steps magnify it on parameters whose gradient is ~0)."""
    assert main(_cli(["--out-dir", str(tmp_path / "one"), "--batch-size", "8"])) == 0
    assert main(_cli(["--out-dir", str(tmp_path / "accum"), "--batch-size", "4", "--grad-accum", "2"])) == 0
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        "2",
        "-m",
        "edgetune.assemble",
        *_cli(["--out-dir", str(tmp_path / "two"), "--batch-size", "4"]),
    ]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    one = _weights(tmp_path / "one")
    for other in ("two", "accum"):
        weights = _weights(tmp_path / other)
        worst = max((one[k] - weights[k]).abs().max().item() for k in one)
        assert worst < 5e-5, (other, worst)
        losses = [h["loss"] for h in json.loads((tmp_path / other / "result.json").read_text())["history"]]
        reference = [h["loss"] for h in json.loads((tmp_path / "one" / "result.json").read_text())["history"]]
        assert losses == pytest.approx(reference, abs=1e-6), other
    assert json.loads((tmp_path / "two" / "result.json").read_text())["device"].endswith("× 2")


def test_cli_validation(capsys):
    with pytest.raises(SystemExit):
        parse(["--phase", "MT", "--out-dir", "x"])
    assert "MT needs --meta" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        parse(["--phase", "FT", "--out-dir", "x", "--incubation", "a"])
    assert "FT needs 4 --incubation dirs" in capsys.readouterr().err
    assert parse(["--phase", "E2E", "--out-dir", "x", "--depths", "4", "4"])[0].depths == (4, 4)
    for bad, message in (
        (["--steps", "-3"], "steps=-3; expected a positive integer"),
        (["--batch-size", "0"], "batch_size=0; expected a positive integer"),
        (["--depths", "3", "3"], "depths=(3, 3); expected positive stage depths summing to edge-small's 8 blocks"),
        (["--lr", "inf"], "lr=inf"),
        (["--seed", "99999999999"], "seed=99999999999; expected an integer in [0, 2**32)"),
    ):
        with pytest.raises(SystemExit):
            parse(["--phase", "E2E", "--out-dir", "x", *bad])
        assert message in capsys.readouterr().err, bad
    assert Division((3, 3)).total == 6 and stage_state  # public API imported


def test_a_folder_holding_another_run_is_refused_and_force_trains_again(tmp_path, capsys):
    out = str(tmp_path / "run")
    assert main(_cli(["--out-dir", out])) == 0
    first = json.loads((tmp_path / "run" / "result.json").read_text())
    assert main(_cli(["--out-dir", out, "--checkpoint-every", "5"])) == 0  # bookkeeping only: the same run, reused
    capsys.readouterr()
    assert main(_cli(["--out-dir", out, "--lr", "0.01"])) == 2
    err = capsys.readouterr().err
    assert "holds a finished run with other settings (lr: 0.001 there, 0.01 asked)" in err and "--force" in err
    assert json.loads((tmp_path / "run" / "result.json").read_text()) == first  # untouched
    assert main(_cli(["--out-dir", out, "--lr", "0.01", "--force"])) == 0
    assert json.loads((tmp_path / "run" / "result.json").read_text())["config"]["lr"] == 0.01


def test_a_missing_input_run_is_named_with_exit_2(tmp_path, capsys):
    meta = tmp_path / "no-pt-here"
    args = ["--phase", "MT", "--model", "edge-tiny", "--depths", "2", "2", "--meta", str(meta)]
    assert main([*args, "--out-dir", str(tmp_path / "mt")]) == 2
    err = capsys.readouterr().err
    assert f"{meta} holds no finished run (no result.json); run that phase first" in err and "Traceback" not in err


def test_a_damaged_checkpoint_is_skipped_and_the_run_still_reaches_the_same_weights(tmp_path, monkeypatch, capsys):
    _reference_and_crashed(tmp_path, monkeypatch)
    checkpoints = sorted((tmp_path / "b" / "checkpoints").glob("step_*"), key=lambda p: int(p.name.split("_")[1]))
    assert len(checkpoints) == 2 and (checkpoints[-1] / "checksums.json").is_file()
    weights = next(checkpoints[-1].glob("*.safetensors"))
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one byte inside a tensor: accelerate would load it without complaint
    weights.write_bytes(bytes(data))
    capsys.readouterr()
    resumed = run(AssembleConfig("E2E", str(tmp_path / "b"), steps=6, **TINY))
    err = capsys.readouterr().err
    assert f"edgetune: checkpoint {checkpoints[-1]}: {weights.name} does not match its checksum" in err
    assert [h["step"] for h in resumed.history] == [1, 2, 3, 4, 5, 6]
    a, b = _weights(tmp_path / "a"), _weights(tmp_path / "b")
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_force_empties_only_a_run_folder(tmp_path, capsys):
    precious = tmp_path / "notes.txt"
    precious.write_text("mine")
    assert main(_cli(["--out-dir", str(tmp_path), "--force"])) == 2
    assert "--force empties only a run's folder" in capsys.readouterr().err and precious.read_text() == "mine"


def test_an_unfinished_run_with_other_settings_is_refused_not_resumed(tmp_path, monkeypatch, capsys):
    _reference_and_crashed(tmp_path, monkeypatch)
    before = sorted(p.name for p in (tmp_path / "b" / "checkpoints").iterdir())
    assert main(_cli(["--out-dir", str(tmp_path / "b"), "--steps", "6", "--batch-size", "8", "--lr", "0.01"])) == 2
    err = capsys.readouterr().err
    assert "holds an unfinished run with other settings (lr: 0.001 there, 0.01 asked)" in err and "--force" in err
    assert sorted(p.name for p in (tmp_path / "b" / "checkpoints").iterdir()) == before  # nothing touched


def test_a_finished_run_is_tied_to_the_weights_it_started_from(tmp_path, capsys):
    """MT's result stands for the PT weights it started from, by content: retraining PT under the same folder makes
    the MT folder another run; the same weights in another folder are the same run."""
    common = ["--model", "edge-tiny", "--depths", "2", "2", "--num-classes", "4", "--train-size", "64"]
    common += ["--test-size", "16", "--batch-size", "8", "--steps", "2"]
    pt, mt = tmp_path / "pt", tmp_path / "mt"
    assert main(["--phase", "PT", "--out-dir", str(pt), *common]) == 0
    mt_args = ["--phase", "MT", "--idx", "0", "--meta", str(pt), "--out-dir", str(mt), *common]
    assert main(mt_args) == 0
    import shutil

    shutil.copytree(pt, tmp_path / "pt-copy")
    assert main([*mt_args[:5], str(tmp_path / "pt-copy"), *mt_args[6:]]) == 0  # same weights elsewhere: reused
    assert main(["--phase", "PT", "--out-dir", str(pt), *common, "--seed", "1", "--force"]) == 0
    capsys.readouterr()
    assert main(mt_args) == 2
    err = capsys.readouterr().err
    assert "holds a finished run with other settings (inputs: {'meta': " in err


def test_a_training_error_is_not_reported_as_bad_input(tmp_path, monkeypatch):
    """Only folder conflicts and missing inputs are usage errors (exit 2); a failure inside training surfaces."""

    def broken(*args, **kwargs):
        raise ValueError("a bug inside training")

    monkeypatch.setattr(train, "_train", broken)
    with pytest.raises(ValueError, match="a bug inside training"):
        main(_cli(["--out-dir", str(tmp_path / "x")]))


def _image_folders(root, classes=3, train=6, val=2):
    """ImageNet's layout in miniature: data/imagenet/{train,val}/<class>/*.png, each class its own colour."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    for split, n in (("train", train), ("val", val)):
        for c in range(classes):
            folder = root / "data" / "imagenet" / split / f"n0{c}"
            folder.mkdir(parents=True)
            for i in range(n):
                pixels = rng.integers(0, 60, (40, 48, 3)) + np.array([180, 90, 0])[[(c + k) % 3 for k in range(3)]]
                Image.fromarray(pixels.astype(np.uint8)).save(folder / f"{i}.png")


FOLDERS = dict(TINY, num_classes=3, train_size=18, test_size=6, batch_size=4, data="imagefolder", workers=0)


def test_imagenet_layout_is_streamed_and_workers_do_not_change_the_result(tmp_path, monkeypatch):
    monkeypatch.setenv("EDGETUNE_ROOT", str(tmp_path))
    _image_folders(tmp_path)
    train_set, test_set = train.data(AssembleConfig("E2E", "x", **FOLDERS))
    assert (len(train_set), len(test_set)) == (18, 6) and not isinstance(train_set, tuple)  # lazy, not tensors
    x, y = test_set[0]
    assert x.shape == (3, 32, 32) and 0 <= float(x.min()) and float(x.max()) <= 1 and y in (0, 1, 2)
    one = run(AssembleConfig("E2E", str(tmp_path / "w0"), steps=4, **FOLDERS))
    two = run(AssembleConfig("E2E", str(tmp_path / "w2"), steps=4, **{**FOLDERS, "workers": 2}))
    a, b = _weights(tmp_path / "w0"), _weights(tmp_path / "w2")
    assert all(torch.equal(a[k], b[k]) for k in a), "augmentation must not depend on the worker count"
    assert one.metrics == two.metrics and [h["loss"] for h in one.history] == [h["loss"] for h in two.history]
    with pytest.raises(ValueError, match=r"train/ has 3 classes and val/ 3; expected the same 5 \(num_classes\)"):
        train.data(AssembleConfig("E2E", "x", **{**FOLDERS, "num_classes": 5}))


def test_a_streamed_run_resumes_to_the_same_weights(tmp_path, monkeypatch):
    monkeypatch.setenv("EDGETUNE_ROOT", str(tmp_path))
    _image_folders(tmp_path)
    _reference_and_crashed(tmp_path, monkeypatch, FOLDERS)
    resumed = run(AssembleConfig("E2E", str(tmp_path / "b"), steps=6, **FOLDERS))
    assert [h["step"] for h in resumed.history] == [1, 2, 3, 4, 5, 6]
    a, b = _weights(tmp_path / "a"), _weights(tmp_path / "b")
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_a_damaged_input_or_finished_run_is_named_with_exit_2(tmp_path, capsys):
    common = ["--model", "edge-tiny", "--depths", "2", "2", "--num-classes", "4", "--train-size", "64"]
    common += ["--test-size", "16", "--batch-size", "8", "--steps", "2"]
    pt = tmp_path / "pt"
    assert main(["--phase", "PT", "--out-dir", str(pt), *common]) == 0
    assert set(json.loads((pt / "result.json").read_text())["checksums"]) == {"model.safetensors", "run.json"}
    data = bytearray((pt / "model.safetensors").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (pt / "model.safetensors").write_bytes(bytes(data))
    capsys.readouterr()
    assert main(["--phase", "MT", "--meta", str(pt), "--out-dir", str(tmp_path / "mt"), *common]) == 2
    err = capsys.readouterr().err
    assert f"{pt}: model.safetensors does not match its checksum" in err and "--force" in err
    assert main(["--phase", "PT", "--out-dir", str(pt), *common]) == 2  # its own reuse refuses it too
    assert "does not match its checksum" in capsys.readouterr().err
    assert not (tmp_path / "mt").exists()


def test_a_dataset_that_does_not_match_the_settings_exits_2_and_claims_nothing(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("EDGETUNE_ROOT", str(tmp_path))
    _image_folders(tmp_path)
    out = tmp_path / "run"
    args = ["--phase", "E2E", "--model", "edge-tiny", "--depths", "2", "2", "--data", "imagefolder", "--workers", "0"]
    assert main([*args, "--num-classes", "5", "--out-dir", str(out)]) == 2
    assert "train/ has 3 classes and val/ 3; expected the same 5 (num_classes)" in capsys.readouterr().err
    assert not (out / "run.json").exists()  # nothing was claimed: the corrected run starts cleanly
    small = ["--num-classes", "3", "--train-size", "18", "--test-size", "6", "--batch-size", "4", "--steps", "2"]
    assert main([*args, *small, "--out-dir", str(out)]) == 0
    assert json.loads((out / "run.json").read_text())["processes"] == 1


def test_a_checkpoint_gives_the_architecture_trained_from_scratch(tmp_path, monkeypatch, capsys):
    """`model` may name a checkpoint: assembling takes its architecture (Q/K/V bias, eps, widths) and trains it from
    random initialization, as the method does; a path that names nothing is refused up front."""
    from edgetune.assemble.config import config as assembling_config
    from edgetune.models import build_vit
    from edgetune.models.load import save_timm_checkpoint
    from edgetune.models.vit import VIT_FAMILY, ViTShape

    monkeypatch.setenv("EDGETUNE_ROOT", str(tmp_path))
    shape = ViTShape(**{**VIT_FAMILY["edge-tiny"].__dict__, "qkv_bias": False, "norm_eps": 1e-12})
    weights, _ = save_timm_checkpoint(build_vit(shape, 4), tmp_path / "model" / "tiny.safetensors")
    cfg = AssembleConfig("E2E", str(tmp_path / "run"), **{**TINY, "model": "model/tiny.safetensors", "steps": 2})
    assert cfg.shape == shape
    result = run(cfg)
    assert all(k != "blocks.0.attn.qkv.bias" for k in _weights(tmp_path / "run")) and result.metrics["accuracy"] >= 0
    assert assembling_config("smoke", model="model/tiny.safetensors").model == "model/tiny.safetensors"
    with pytest.raises(FileNotFoundError, match="no checkpoint at"):
        AssembleConfig("E2E", "x", **{**TINY, "model": "model/none.safetensors"})
    with pytest.raises(SystemExit):
        parse(["--phase", "E2E", "--out-dir", "x", "--model", "model/none.safetensors", "--depths", "2", "2"])
    assert "no checkpoint at" in capsys.readouterr().err
