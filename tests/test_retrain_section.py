import copy

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from stage_keys import assert_keyed_by_reads

from edgetune import retrain
from edgetune.data.scenes import CLEAR, SceneSpec, render_scenes
from edgetune.models.vit import ViTShape, build_vit
from edgetune.retrain.data import Stream, Window, load_stream, simulated_target
from edgetune.retrain.kb import NeuronIndex, build_knowledge_base, edge_model, merge_into_kb
from edgetune.retrain.law import ScalingLaw
from edgetune.retrain.offline import Offline, lora_config
from edgetune.retrain.online import baselines, budget, frechet, hardest_sample, moments, run_stream
from edgetune.retrain.train import mmd_rbf, step_cost
from edgetune.retrain.train import retrain as retrain_loop
from edgetune.training import normalize

SHAPE = ViTShape(32, 8, 48, 4, 3, 96)
CPU = torch.device("cpu")


def test_config_validation_names_the_field():
    with pytest.raises(ValueError, match=r"sparsity=1.0 must lie in \[0, 1\)"):
        retrain.config("smoke", sparsity=1.0)
    with pytest.raises(ValueError, match=r"budget_domains=30 must lie in 1..num_domains=20"):
        retrain.config("default", budget_domains=30)
    with pytest.raises(ValueError, match="data='csv'"):
        retrain.config("default", data="csv")
    assert retrain.config("default").num_domains >= 20 and retrain.config("gpu").num_domains >= 20


def test_simulated_target_is_a_fixed_policy_per_seed():
    x, _ = render_scenes(SceneSpec(4, 32), CLEAR, 6, seed=0)
    a, policy = simulated_target(x, seed=3)
    b, same = simulated_target(x, seed=3)
    assert policy == same and torch.equal(a, b) and a.shape == x.shape and 0 <= a.min() and a.max() <= 1
    assert not torch.equal(a, x)
    assert simulated_target(x, seed=4)[1] != policy or not torch.equal(simulated_target(x, seed=4)[0], a)


def test_mmd_is_zero_for_identical_sets_and_grows_with_shift():
    g = torch.Generator().manual_seed(0)
    a = torch.randn(64, 8, generator=g)
    assert mmd_rbf(a, a).abs() < 1e-6
    near, far = mmd_rbf(a, a + 0.1), mmd_rbf(a, a + 2.0)
    assert 0 < near < far


def test_frechet_distance_of_gaussians():
    g = torch.Generator().manual_seed(0)
    a = torch.randn(4000, 3, generator=g, dtype=torch.float64)
    assert frechet(moments(a), moments(a)) == pytest.approx(0.0, abs=1e-6)
    assert frechet(moments(a), moments(a + 1.0)) == pytest.approx(3.0, abs=1e-6)  # |Δμ|² = 3, same Σ


def test_lora_config_follows_blocktrainer():
    fm = build_vit(SHAPE, 5)
    config = lora_config(fm, 8)
    assert config.r == 48 // 8 and config.lora_alpha == config.r and set(config.target_modules) == {"qkv"}


@pytest.fixture
def offline():
    torch.manual_seed(0)
    fm = build_vit(SHAPE, 4).eval()
    kb = build_knowledge_base(fm, 0.67, 0.5).eval()
    return Offline(fm, kb, NeuronIndex.fit(kb, fm), {})


def _stream(n_windows: int) -> Stream:
    spec = SceneSpec(4, 32)
    source = render_scenes(spec, CLEAR, 64, seed=0)
    windows = [
        Window(f"w{i}", render_scenes(spec, CLEAR, 32, seed=10 + i)[0], render_scenes(spec, CLEAR, 32, seed=20 + i))
        for i in range(n_windows)
    ]
    return Stream(source, source, windows)


def _law(depth: int) -> ScalingLaw:
    rows = []
    for t in range(4):
        comp = [(t + b) % 2 for b in range(depth)]
        for q in (0, 5, 10):
            acc = 0.3 + 0.02 * t - 0.01 * sum(comp) + 0.2 * (1 - (q + 1) ** -0.5)
            rows.append(
                {
                    "trial": t,
                    "iteration": q,
                    "accuracy": acc,
                    "fd": 0.1 * t,
                    "confidence": 0.5,
                    **{f"c{b}": c for b, c in enumerate(comp)},
                }
            )
    return ScalingLaw.fit(pd.DataFrame(rows), "additive", depth, ("fd", "confidence"))


def test_step_cost_counts_backward_only_for_what_trains(offline):
    cfg = retrain.config("smoke", window_iterations=8, batch_size=8)
    sample = normalize(_stream(1).source[0][:1])
    fixed, lora = baselines(cfg, offline, sample)
    f_fixed, m_fixed = step_cost(copy.deepcopy(fixed), 32, 8)
    f_double, m_double = step_cost(copy.deepcopy(fixed), 32, 16)
    frozen = copy.deepcopy(fixed)
    for name, p in frozen.named_parameters():
        p.requires_grad_(name.startswith("blocks.0."))  # only the first block trains: no weight grads elsewhere
    f_frozen, _ = step_cost(frozen, 32, 8)
    assert f_double == pytest.approx(2 * f_fixed, rel=0.02) and m_double == pytest.approx(2 * m_fixed, rel=0.05)
    assert f_frozen < f_fixed
    bud = budget(cfg, offline, fixed, lora, sample)
    assert bud.fixed_iterations == 8  # the fixed model is the all-compressed one: the budget's own unit
    assert bud.lora_iterations == int(bud.flops // bud.step_flops["fixed-lora"])
    assert (bud.costs.time_full > bud.costs.time_comp).all() and bud.memory > bud.costs.mem_comp.sum()


def test_merging_a_zero_update_leaves_the_foundation_model_unchanged(offline):
    before = {k: v.clone() for k, v in offline.fm.state_dict().items()}
    sample = hardest_sample(offline.kb, _stream(1).source[0][:8], CPU)
    small = edge_model(offline.kb, sample, [True, False, True, False], 0.5)
    deltas = merge_into_kb(offline.kb, small, ratio=0.5)
    offline.index.project_to_fm(offline.fm, deltas, alpha=0.1)
    assert all(torch.equal(before[k], v) for k, v in offline.fm.state_dict().items())
    # a real update does move the fm, and only through matched weights
    with torch.no_grad():
        small.blocks[1].mlp.fc1.weight.add_(0.1)
    deltas = merge_into_kb(offline.kb, small, ratio=0.5)
    offline.index.project_to_fm(offline.fm, deltas, alpha=0.1)
    changed = {k for k, v in offline.fm.state_dict().items() if not torch.equal(before[k], v)}
    assert changed == {"blocks.1.mlp.fc1.weight"}


def test_retrain_curve_scores_before_every_eval_and_after(offline):
    stream = _stream(1)
    small = edge_model(offline.kb, normalize(stream.source[0][:1]), [True] * 4, 0.5)
    curve = retrain_loop(
        small,
        list(small.parameters()),
        stream.source,
        stream.windows[0].unlabelled,
        stream.windows[0].test,
        steps=7,
        batch_size=8,
        lr=1e-3,
        mmd_weight=3.0,
        eval_every=3,
        seed=0,
        device=torch.device("cpu"),
    )
    assert [c["iteration"] for c in curve] == [0, 3, 6, 7]
    assert all(0 <= c["accuracy"] <= 1 for c in curve)


def test_stream_resumes_to_the_same_results(offline, tmp_path):
    cfg = retrain.config(
        "smoke", window_iterations=4, batch_size=8, eval_every=2, stat_size=32, num_domains=2, budget_domains=1
    )
    stream, law = _stream(2), _law(4)
    whole = run_stream(cfg, offline, law, stream, stream.windows, tmp_path / "a", CPU)
    run_stream(cfg, offline, law, stream, stream.windows[:1], tmp_path / "b", CPU)  # "interrupted" after one
    resumed = run_stream(cfg, offline, law, stream, stream.windows, tmp_path / "b", CPU)
    pd.testing.assert_frame_equal(
        whole["rows"].drop(columns=["greedy_ms", "exact_ms"]), resumed["rows"].drop(columns=["greedy_ms", "exact_ms"])
    )
    assert set(whole["rows"].method) == {"blocktrainer", "blocktrainer-fm", "fixed", "fixed-lora", "fm"}
    bt = whole["rows"][whole["rows"].method == "blocktrainer"]
    assert (bt.plan_flops <= 4 * step_cost_budget(cfg, offline, stream) * (1 + 1e-9)).all()


def step_cost_budget(cfg, offline, stream) -> float:
    fixed, lora = baselines(cfg, offline, normalize(stream.source[0][:1]))
    return budget(cfg, offline, fixed, lora, normalize(stream.source[0][:1])).step_flops["all-compressed"]


def _write_domains(root, domains, classes, per_class=3, size=12):
    rng = np.random.default_rng(0)
    for d in domains:
        for c in classes:
            folder = root / d / c
            folder.mkdir(parents=True)
            for i in range(per_class):
                Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8)).save(folder / f"{i}.png")


def test_imagefolder_domains_stream(tmp_path, monkeypatch):
    monkeypatch.setenv("EDGETUNE_ROOT", str(tmp_path))
    _write_domains(tmp_path / "data" / "dn", ["real", "sketch"], ["a", "b"])
    cfg = retrain.config(
        "default",
        data="imagefolder",
        data_root="dn",
        source_domains=("real",),
        target_domains=("sketch",),
        num_classes=2,
        model="edge-tiny",
        num_domains=2,
        test_size=2,
        window_size=3,
        budget_domains=1,
    )
    stream = load_stream(cfg)
    assert stream.source[0].shape[1:] == (3, 32, 32) and len(stream.source[0]) + len(stream.source_test[0]) == 6
    assert [w.name for w in stream.windows] == ["sketch-0", "sketch-1"] and len(stream.windows[0].test[0]) == 2
    _write_domains(tmp_path / "data" / "bad", ["real"], ["a", "b"])
    _write_domains(tmp_path / "data" / "bad", ["sketch"], ["a", "c"])
    with pytest.raises(ValueError, match="domain 'sketch' under .* has classes"):
        load_stream(cfg.__class__(**{**cfg.__dict__, "data_root": "bad"}))


def test_each_offline_stage_is_keyed_by_what_it_reads():
    """Changing a field a cached stage reads (itself or through the stage it builds on) gives a new key; changing
    one it does not read keeps the key."""
    from edgetune.retrain.config import STAGES
    from edgetune.retrain.config import config as retrain_config

    base = retrain_config("smoke")
    expected = {
        "retraining-pretrain": {"pretrain_steps", "data_root", "source_domains"},
        "retraining-lora": {"pretrain_steps", "test_size", "lora_divisor"},  # reports its accuracy on the test split
        "retraining-kb": {"pretrain_steps", "test_size", "index_ridge", "sparsity"},  # fits the neuron index
        "retraining-law": {"pretrain_steps", "test_size", "index_ridge", "sparsity", "law_trials"},  # on the kb
        "retraining-online": {"pretrain_steps", "index_ridge", "window_iterations", "sparsity"},
        "retraining-budget": {"pretrain_steps", "window_iterations", "budget_domains"},
    }
    unread = {"device", "budget_factors"}
    assert_keyed_by_reads(base, STAGES, expected, unread)
    assert "budget_domains" not in STAGES[4].fields()  # the main stream is not keyed by the sweep's length


def test_the_folder_path_runs_every_stage_on_lazy_images(tmp_path, monkeypatch):
    """The paper profile's data path end to end (ImageFolder domains, images decoded only as batches ask), at a few
    steps: offline stages, scaling-law trials, the stream and the budget sweep."""
    from edgetune.data.streaming import LazyImages
    from edgetune.retrain import core

    monkeypatch.setenv("EDGETUNE_ROOT", str(tmp_path))
    monkeypatch.setenv("EDGETUNE_RUNS", str(tmp_path / "runs"))
    _write_domains(tmp_path / "data" / "dn", ["real", "sketch"], ["a", "b"], per_class=8)
    cfg = retrain.config(
        "smoke",
        data="imagefolder",
        data_root="dn",
        source_domains=("real",),
        target_domains=("sketch",),
        num_classes=2,
        num_domains=2,
        test_size=2,
        window_size=4,
        stat_size=4,
        batch_size=4,
        pretrain_steps=2,
        lora_steps=2,
        kb_steps=2,
        gate_steps=2,
        law_trials=2,
        law_iterations=2,
        eval_every=1,
        window_iterations=2,
        budget_domains=1,
        budget_factors=(0.5, 1.0),
        device="cpu",
    )
    stream, offline, device = core.setup(cfg)
    assert isinstance(stream.source[0], LazyImages) and isinstance(stream.windows[0].unlabelled, LazyImages)
    points = core.law_points(cfg, offline, stream, device)
    assert sorted(points.trial.unique()) == [0, 1]
    laws, _, form = core.fit_law(cfg, points, len(offline.kb.blocks))
    tables = core.online(cfg, offline, laws[form], stream, device)
    assert set(tables["rows"].window) == {0, 1} and set(tables["budget"].budget_factor) == {0.5, 1.0}


@pytest.mark.parametrize("magnitude", [0.0, 0.2, 0.5, 0.999])
def test_every_simulated_operation_accepts_every_magnitude(magnitude):
    """A policy may draw any operation at any magnitude in [0, 1): each must give valid images (the colour operation
    once asked torchvision for a negative saturation at magnitudes below 0.22)."""
    from edgetune.retrain.data import OPERATIONS, _operation

    x = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    for name in OPERATIONS:
        out = _operation(x, name, magnitude)
        assert out.shape == x.shape and torch.isfinite(out).all(), name


def test_blocktrainers_lead_is_decided_by_an_interval_over_the_windows():
    """Known answers: a steady 5-point lead over 20 windows holds, a steady 5-point deficit is refuted, a lead that
    swings ±20 points around +2 is inconclusive (n/a, with the resolution)."""
    import pandas as pd

    from edgetune.retrain import ledger

    def table(lead):
        rows = []
        for w, d in enumerate(lead):
            rows += [
                {"window": w, "method": "blocktrainer", "after": 0.5 + d / 100},
                {"window": w, "method": "fixed", "after": 0.5},
                {"window": w, "method": "fixed-lora", "after": 0.5},
            ]
        rows = pd.DataFrame(rows)
        return rows, rows.groupby("method", as_index=False).after.mean()

    quality = pd.DataFrame({"split": ["held-out"], "form": ["additive"], "r2": [0.9], "mae": [0.01]})
    stream = {"r2": 0.8, "mae": 0.02}
    verdicts = []
    for lead in ([5.0] * 19 + [6.0], [-5.0] * 19 + [-6.0], [22.0, -18.0] * 10):
        rows, averages = table(lead)
        claim = ledger.claims_rows("smoke", averages, quality, "additive", stream, rows)[0]
        verdicts.append(claim.holds)
    assert verdicts == [True, False, None]
    assert "over 20 windows (1 seed); inconclusive: the interval straddles +1" in claim.note
    assert ledger.claims_rows("smoke", averages, quality, "additive", stream)[0].holds is True  # the mean alone: +2


def test_the_law_claim_is_decided_by_an_interval_over_held_out_trials():
    """Known answers: predictions within 0.01 of 10 trials' curves hold (R² ≈ 1), predictions that ignore the
    trials refute (R² ≤ 0), and a law right on one trial and wrong on the other of two is inconclusive."""
    import numpy as np
    import pandas as pd

    from edgetune import evidence
    from edgetune.retrain import ledger

    rng = np.random.default_rng(0)

    def quality(trials: int, noise: float, flat: bool = False):
        points = []
        for t in range(trials):
            measured = 0.2 + 0.06 * t + 0.1 * np.linspace(0, 1, 11)  # trials differ: that is the variance to explain
            predicted = np.full(11, 0.5) if flat else measured + rng.normal(0, noise, 11)
            points.append(pd.DataFrame({"trial": t, "measured": measured, "predicted": predicted}))
        table = pd.DataFrame({"split": ["held-out"], "form": ["additive"], "r2": [0.0], "mae": [0.0]})
        table.attrs["held_out"] = {"additive": pd.concat(points, ignore_index=True)}
        return table

    stream = {"r2": 0.0, "mae": 0.0}
    good = ledger._law_claim("smoke", quality(10, 0.01), "additive", stream)
    bad = ledger._law_claim("smoke", quality(10, 0.0, flat=True), "additive", stream)
    assert (good.holds, bad.holds) == (True, False)
    assert good.estimate.low > 0.5 and good.estimate.items == 110 and good.unit == "R²"
    assert bad.estimate.high < 0.5 and "points of 10 held-out trials, resampled by trial" in bad.note
    # two trials: one predicted exactly, the other flat
    mixed = quality(2, 0.0)
    points = mixed.attrs["held_out"]["additive"]
    points.loc[points.trial == 1, "predicted"] = 0.9
    noisy = ledger._law_claim("smoke", mixed, "additive", stream)
    assert noisy.holds is None and noisy.estimate.low < 0.5 < noisy.estimate.high
    with pytest.raises(ValueError, match="at least 2 clusters, got 1"):
        evidence.clustered([(np.ones(3), np.ones(3))], lambda a, b: 0.0)
