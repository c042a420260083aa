import pytest
import torch
import torch.nn.functional as F

from edgetune.assemble import (
    Division,
    assemble,
    build_divided,
    incubation_model,
    load_stage,
    meta_division,
    stage_parameters,
    stage_state,
)
from edgetune.models.vit import ViTShape

SHAPE = ViTShape(32, 8, 48, 8, 3, 96)
TARGET = Division((2, 2, 2, 2))


def test_division_assigns_every_parameter_to_one_stage():
    vit = build_divided(SHAPE, TARGET, 5)
    owners = [TARGET.stage_of(name) for name, _ in vit.named_parameters()]
    counts = [sum(p.numel() for p in stage_parameters(vit, TARGET, i)) for i in range(4)]
    assert sum(counts) == sum(p.numel() for p in vit.parameters()) and set(owners) == {0, 1, 2, 3}
    assert list(TARGET.blocks(2)) == [4, 5] and TARGET.stage_of("cls_token") == 0 and TARGET.stage_of("head.bias") == 3
    keys = stage_state(vit, TARGET, 2)
    assert sorted({k.split(".")[1] for k in keys}) == ["0", "1"]  # blocks re-indexed from 0
    with pytest.raises(ValueError, match=r"divided depths \(2, 0\)"):
        Division((2, 0))


def test_stage_round_trip_and_strict_loading():
    torch.manual_seed(0)
    a, b = build_divided(SHAPE, TARGET, 5), build_divided(SHAPE, TARGET, 5)
    load_stage(b, TARGET, 1, stage_state(a, TARGET, 1))
    for key, value in stage_state(a, TARGET, 1).items():
        assert torch.equal(value, stage_state(b, TARGET, 1)[key])
    assert not torch.equal(a.blocks[0].attn.qkv.weight, b.blocks[0].attn.qkv.weight)  # other stages untouched
    with pytest.raises(ValueError, match=r"stage 1 state does not fit: missing \['blocks.1"):
        load_stage(b, TARGET, 1, stage_state(build_divided(SHAPE, meta_division(), 5), meta_division(), 1))


@pytest.mark.parametrize("i", [0, 1, 3])
def test_incubation_trains_only_its_stage(i):
    torch.manual_seed(0)
    meta = build_divided(SHAPE, meta_division(), 5)
    hybrid, division = incubation_model(meta, TARGET, i, SHAPE, 5, seed=1)
    assert division.depths == tuple(2 if j == i else 1 for j in range(4)) and len(hybrid.blocks) == 5
    for j in set(range(4)) - {i}:  # the frozen stages are the meta model's
        for key, value in stage_state(meta, meta_division(), j).items():
            assert torch.equal(value, stage_state(hybrid, division, j)[key]), key
    before = {k: v.clone() for k, v in hybrid.state_dict().items()}
    optimizer = torch.optim.AdamW([p for p in hybrid.parameters() if p.requires_grad], lr=1e-2)
    x, y = torch.rand(4, 3, 32, 32), torch.randint(0, 5, (4,))
    F.cross_entropy(hybrid(x), y).backward()
    optimizer.step()
    changed = {division.stage_of(k) for k, v in hybrid.state_dict().items() if not torch.equal(v, before[k])}
    assert changed == {i}
    assert all(p.grad is not None for p in stage_parameters(hybrid, division, i))


def test_assembling_is_lossless():
    torch.manual_seed(0)
    meta = build_divided(SHAPE, meta_division(), 5)
    runs = [incubation_model(meta, TARGET, i, SHAPE, 5, seed=10 + i) for i in range(4)]
    model = assemble(runs, TARGET, SHAPE, 5)
    for i, (vit, division) in enumerate(runs):
        mine = stage_state(model, TARGET, i)
        for key, value in stage_state(vit, division, i).items():
            assert torch.equal(mine[key], value), (i, key)
    # Stitching the stages of one full model reproduces that model exactly.
    full = build_divided(SHAPE, TARGET, 5).eval()
    copy = assemble([(full, TARGET)] * 4, TARGET, SHAPE, 5).eval()
    x = torch.rand(2, 3, 32, 32)
    assert torch.equal(copy(x), full(x))
    with pytest.raises(ValueError, match="one MT run per stage: got 2 for 4 stages"):
        assemble(runs[:2], TARGET, SHAPE, 5)
