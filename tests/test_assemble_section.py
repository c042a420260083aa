import math

import pandas as pd
import pytest

from edgetune.assemble import config, core, ledger


def test_speedup_and_claims_follow_the_measurements():
    curve = pd.DataFrame(
        {
            "method": ["E2E"] * 3 + ["assembling (FT)"] * 2,
            "tflops": [1.0, 2.0, 4.0, 0.5, 1.0],
            "accuracy": [0.3, 0.5, 0.6, 0.55, 0.62],
        }
    )
    assert core.speedup(curve, 0.6) == pytest.approx(4.0)  # E2E spends 4 TFLOPs, assembling reaches 0.6 at 1
    assert math.isnan(core.speedup(curve, 0.7))
    summary = pd.DataFrame(
        {
            "data": [1.0, 0.5, 0.25],
            "gain_pp": [0.5, 2.0, 6.0],
            "assembling_accuracy": [0.8] * 3,
            "e2e_accuracy": [0.795] * 3,
            "assembling_tflops": [1.0] * 3,
            "e2e_tflops": [1.0] * 3,
        }
    )
    rows = ledger.claims_rows("smoke", summary, 4.0)
    assert [r.holds for r in rows] == [True, True, True]
    assert rows[1].reproduced_value == "+0.5 / +2.0 / +6.0 pp at 100% / 50% / 25%"
    worse = ledger.claims_rows("smoke", summary.assign(gain_pp=[-1.0, -2.0, -3.0]), float("nan"))
    assert [r.holds for r in worse] == [False, False, False] and worse[2].reproduced_value == "never reached"


def test_accuracy_claims_are_decided_by_paired_intervals_over_test_items():
    """Known answers: FT right on every item E2E gets right and on 60 more of 400 holds; a 2-item edge is
    inconclusive; the gain that grows by 80 items at 25 % of the data holds."""
    import numpy as np

    from edgetune.runs import RunResult

    def run(right):
        return RunResult(
            stage="x", config={}, seed=0, metrics={"accuracy": float(np.mean(right)), "test_correct": right}
        )

    e2e = [1] * 200 + [0] * 200
    clear = [1] * 260 + [0] * 140
    slight = [1] * 202 + [0] * 198
    summary = pd.DataFrame(
        {
            "data": [1.0, 0.25],
            "gain_pp": [15.0, 35.0],
            "assembling_accuracy": [0.65, 0.6],
            "e2e_accuracy": [0.5, 0.25],
            "assembling_tflops": [1.0] * 2,
            "e2e_tflops": [1.0] * 2,
        }
    )
    small_e2e = [1] * 100 + [0] * 300
    small_ft = [1] * 240 + [0] * 160
    runs = {1.0: {"FT": run(clear), "E2E": run(e2e)}, 0.25: {"FT": run(small_ft), "E2E": run(small_e2e)}}
    beats, grows, _ = ledger.claims_rows("smoke", summary, 4.0, runs)
    assert (beats.holds, grows.holds) == (True, True)
    assert "FT − E2E at 100 % of the data: +15.0 pp, 95 % bootstrap interval [+" in beats.note
    assert "over 400 test items (1 seed); holds" in beats.note and "gain at 25% − gain at 100 %: +20.0 pp" in grows.note
    runs[1.0]["FT"] = run(slight)
    beats, _, _ = ledger.claims_rows("smoke", summary.assign(gain_pp=[0.5, 35.0]), 4.0, runs)
    assert beats.holds is None and "inconclusive: the interval straddles 0" in beats.note
    runs[1.0]["FT"] = run([0] * 400)
    assert ledger.claims_rows("smoke", summary, 4.0, runs)[0].holds is False  # refuted, whatever gain_pp says


def test_config_validation():
    assert config("smoke").depths == (2, 2) and config("gpu").model == "edge-deep"
    with pytest.raises(ValueError, match=r"depths \(2, 2\) sum to 4, but edge-small has 8 blocks"):
        config("default", depths=(2, 2))
    with pytest.raises(ValueError, match="must start with 1.0"):
        config("smoke", fractions=(0.5,))


def test_each_phase_is_its_own_cached_stage_keyed_by_its_config_and_what_it_starts_from(tmp_path, monkeypatch):
    """Changing ft_steps retrains FT and E2E only; changing mt_steps retrains MT, FT and E2E, never PT; every data
    share has its own runs; a second identical call trains nothing."""
    import dataclasses

    from edgetune.runs import RunResult

    monkeypatch.setenv("EDGETUNE_RUNS", str(tmp_path))
    trained = []

    def fake_run(phase):
        trained.append((phase.phase, phase.idx, phase.steps, phase.train_size))
        assert phase.out_dir.startswith(str(tmp_path / "cache" / f"assembling-{phase.phase.lower()}-"))
        if phase.phase == "MT":
            assert phase.meta.startswith(str(tmp_path / "cache" / "assembling-pt-"))
        return RunResult(stage=phase.phase, config={}, seed=0, metrics={"accuracy": 0.5}, flops=10.0 * phase.steps)

    monkeypatch.setattr(core, "run", fake_run)
    monkeypatch.setattr(core, "_assembled_accuracy", lambda *a: RunResult("stitched", {}, 0, {"accuracy": 0.1}))
    cfg = config("smoke")
    k = len(cfg.depths)
    core.pipeline(cfg, 1.0)
    assert [t[0] for t in trained] == ["PT", *["MT"] * k, "FT", "E2E"]
    trained.clear()
    core.pipeline(cfg, 1.0)
    assert trained == []  # everything reused
    core.pipeline(dataclasses.replace(cfg, ft_steps=cfg.ft_steps + 1), 1.0)
    assert [t[0] for t in trained] == ["FT", "E2E"]
    trained.clear()
    core.pipeline(dataclasses.replace(cfg, mt_steps=cfg.mt_steps + 1), 1.0)
    assert [t[0] for t in trained] == [*["MT"] * k, "FT", "E2E"]
    trained.clear()
    core.pipeline(cfg, 0.5)  # another share: its own runs, the first share's stay
    assert [t[0] for t in trained] == ["PT", *["MT"] * k, "FT", "E2E"] and trained[0][3] < cfg.train_size
