import pandas as pd
import pytest
import torch
from stage_keys import assert_keyed_by_reads

from edgetune.customize import config, core, ledger
from edgetune.customize.comm import Network
from edgetune.customize.supernet import FULL, SubnetSpec, all_specs, extract_subnet, supernet_forward
from edgetune.customize.train import distillation_loss, train_elastic
from edgetune.models import build_vit
from edgetune.runs import count_parameters


@pytest.fixture
def vit():
    torch.manual_seed(0)
    return build_vit("edge-tiny", 6)


def test_subnet_params_is_exact(vit):
    for spec in all_specs():
        assert core.subnet_params(vit, spec) == count_parameters(extract_subnet(vit, spec))[0], spec


def test_realizable_grid_and_snap(vit):
    widths, depths = core.realizable_grid(vit)
    assert widths == [1 / 3, 2 / 3, 1.0] and depths == [0.25, 0.5, 0.75, 1.0]
    assert core.snap(vit, 0.7, 0.3) == SubnetSpec(2 / 3, 0.25)


def test_distillation_targets_follow_the_kept_blocks(vit):
    x = torch.rand(2, 3, 32, 32)
    teacher = supernet_forward(vit, x, FULL, return_hidden=True)
    entropy = -(teacher[0].softmax(-1) * teacher[0].log_softmax(-1)).sum(-1).mean()
    torch.testing.assert_close(distillation_loss(teacher, teacher, FULL, 4, 0.1), entropy)
    spec = SubnetSpec(1.0, 0.5)  # blocks (0, 2): student states [emb, b0, b2] ↔ teacher [emb, b0, b2]
    student = supernet_forward(vit, x, spec, return_hidden=True)
    mse = sum(torch.nn.functional.mse_loss(s, teacher[1][i]) for s, i in zip(student[1], (0, 1, 3), strict=True))
    soft = -(teacher[0].softmax(-1) * student[0].log_softmax(-1)).sum(-1).mean()
    torch.testing.assert_close(distillation_loss(student, teacher, spec, 4, 0.1), soft + 0.1 * mse)


def test_elastic_training_resumes_to_the_same_weights(vit, tmp_path):
    data = (torch.rand(32, 3, 32, 32), torch.randint(0, 6, (32,)))
    specs = [SubnetSpec(1.0), SubnetSpec(0.5, 0.5)]
    kwargs = dict(
        steps=6,
        batch_size=4,
        lr=1e-3,
        hidden_weight=0.1,
        seed=0,
        checkpoint_every=3,
        device=torch.device("cpu"),
        stage="t",
        config={},
    )
    straight = build_vit("edge-tiny", 6)
    straight.load_state_dict(vit.state_dict())
    train_elastic(straight, vit, data, specs, folder=tmp_path / "a", **kwargs)
    partial = build_vit("edge-tiny", 6)
    partial.load_state_dict(vit.state_dict())
    with pytest.raises(KeyboardInterrupt):  # dies after step 4; the last checkpoint is step 3
        train_elastic(partial, vit, data, specs, folder=tmp_path / "b", stop_after=4, **kwargs)
    resumed = build_vit("edge-tiny", 6)
    resumed.load_state_dict(vit.state_dict())
    result = train_elastic(resumed, vit, data, specs, folder=tmp_path / "b", **kwargs)
    assert [r["step"] for r in result.history] == [1, 2, 3, 4, 5, 6]
    for (name, a), b in zip(straight.state_dict().items(), resumed.state_dict().values(), strict=True):
        assert torch.equal(a, b), name


def test_deploy_counts_exact_bytes(vit):
    net = Network()
    grid = pd.DataFrame({"width": [1.0], "depth": [1.0], "accuracy": [0.5]})
    head = torch.nn.Linear(48, 6)
    proxy = (torch.rand(10, 3, 32, 32), torch.arange(10))
    core.deploy(net, grid, vit, head, proxy, num_devices=5)
    weights = sum(t.numel() * t.element_size() for t in vit.state_dict().values())
    head_bytes = (48 * 6 + 6) * 4
    assert net.bytes(what="sub-backbone weights") == 6 * weights  # cloud → edge, then edge → each of 5 devices
    assert net.bytes(what="header weights") == 5 * head_bytes
    assert net.bytes(what="proxy images (8-bit)") == 10 * 3 * 32 * 32 and net.bytes(what="proxy labels") == 80
    assert net.bytes(what="accuracy table") == 3 * 8
    assert net.bytes(direction="up") == 0


def _tables():
    selection = pd.DataFrame(
        {
            "method": ["pfg", "highest_accuracy", "largest", "random"],
            "tradeoff": [0.3, 0.2, 0.1, 0.0],
            "width": [0.5, 1.0, 1.0, 0.25],
            "depth": [0.5, 1.0, 0.75, 0.25],
        }
    )
    traffic = pd.DataFrame(
        {
            "system": ["ACME", "ACME", "centralized"],
            "src": ["cloud", "device:0", "device"],
            "dst": ["edge", "edge", "cloud"],
            "bytes": [40, 10, 1000],
        }
    )
    comparison = _scored(
        pd.DataFrame(
            {
                "depth": [1, 1, 2, 2],
                "head": ["Linear", "NAS (ours)", "Linear", "NAS (ours)"],
                "accuracy": [0.5, 0.6, 0.7, 0.72],
            }
        )
    )
    gains = _scored(
        pd.DataFrame(
            {"split": ["C2"] * 4, "method": ["alone", "avg", "js", "emd"], "accuracy": [0.7, 0.71, 0.72, 0.75]}
        )
    )
    return selection, traffic, comparison, gains


def _scored(table: pd.DataFrame, n: int = 1000) -> pd.DataFrame:
    """Per-item 0/1 scores behind each row's accuracy, nested over the same items (paired): a header comparison's
    keyed by (depth, head), personalization's by (split, method) with two devices of equal accuracy."""

    def items(accuracy: float) -> list[int]:
        return [int(i < round(accuracy * n)) for i in range(n)]

    table = table.copy()
    if "head" in table:
        table.attrs["test_correct"] = {(r.depth, r.head): items(r.accuracy) for r in table.itertuples()}
    else:
        table.attrs["test_correct"] = {(r.split, r.method): [items(r.accuracy)] * 2 for r in table.itertuples()}
    return table


def test_claims_follow_the_measurements():
    rows = ledger.claims_rows("smoke", *_tables())
    assert [r.holds for r in rows] == [True, True, True, True]
    assert rows[0].reproduced_value == "+50.0% (0.3000 vs 0.2000)"
    assert rows[1].reproduced_value.startswith("5.0% (0.00 MB vs 0.00 MB); edge↔device traffic alone 1.0%")
    assert rows[2].reproduced_value == "+6.0 pp vs Linear"
    assert rows[1].estimate.value == pytest.approx(5.0) and rows[1].estimate.items == 0  # bytes: exact
    assert rows[2].estimate.value == pytest.approx(6.0) and rows[2].estimate.items == 1000  # averaged over depths
    assert rows[3].estimate.value == pytest.approx(3.0) and rows[3].estimate.low > 0  # EMD − JS, the closest
    selection, traffic, comparison, gains = _tables()
    worse = ledger.claims_rows(
        "smoke",
        selection.assign(tradeoff=[0.2, 0.2, 0.1, 0.0]),
        traffic.assign(bytes=[400, 100, 1000]),
        _scored(comparison.assign(accuracy=[0.6, 0.5, 0.7, 0.7])),
        _scored(gains.assign(accuracy=[0.76, 0.71, 0.72, 0.75])),
    )
    assert [r.holds for r in worse] == [False, False, False, False]
    tied = ledger.claims_rows(
        "smoke",
        *_tables()[:2],
        _scored(comparison.assign(accuracy=[0.6, 0.6, 0.7, 0.7])),
        _scored(gains.assign(accuracy=[0.75, 0.71, 0.75, 0.75])),
    )
    # a sure tie is no win: each interval is the point 0, and "beats" needs more than 0
    assert [r.holds for r in tied[2:]] == [False, False] and "EMD − alone +0.0 [+0.0, +0.0] refuted" in tied[3].note
    unscored = gains.copy()
    unscored.attrs.clear()
    with pytest.raises(ValueError, match="personalization gains table has no per-item scores"):
        ledger.claims_rows("smoke", *_tables()[:3], unscored)


def test_pfg_is_decided_by_the_interval_of_the_resampled_selection():
    from edgetune import evidence

    selection = _tables()[0]
    verdicts = []
    for low, value, high in ((2.0, 5.0, 8.0), (-8.0, -5.0, -2.0), (-3.0, 1.0, 5.0)):
        selection.attrs["tradeoff_gain"] = evidence.Estimate(value, low, high, items=80, seeds=1)
        verdicts.append(ledger._pfg("smoke", selection).holds)
    assert verdicts == [True, False, None]
    selection.attrs.clear()  # without per-item scores: the point estimate, and the note says so
    row = ledger._pfg("smoke", selection)
    assert row.holds is True and row.estimate is None and "a point estimate" in row.note


def test_config_validation():
    assert config("smoke").model == "edge-tiny"
    with pytest.raises(ValueError, match="num_devices=3: ACME's splits need at least 5 devices"):
        config("smoke", num_devices=3)
    with pytest.raises(ValueError, match="size_constraint=1.5"):
        config("smoke", size_constraint=1.5)


def test_each_cloud_stage_is_keyed_by_what_it_reads():
    """Fine-tuning, DynaViTw and DynaViT are keyed by their own fields and those of the stage they start from; the
    edge and device tiers' fields (uncached) and host-only fields never reach a cloud key."""
    from edgetune.customize.config import STAGES

    expected = {
        "acme-finetune": {"finetune_steps", "data", "model"},
        "acme-dynavitw": {"finetune_steps", "dynavitw_steps", "hidden_weight", "importance_batches"},
        "acme-dynavit": {"finetune_steps", "dynavitw_steps", "hidden_weight", "dynavit_steps"},
    }
    unread = {"rounds", "header_budget", "search_steps", "checkpoint_every", "device", "test_size"}
    assert_keyed_by_reads(config("smoke"), STAGES, expected, unread)
