import pytest
import torch
import torch.nn.functional as F

from edgetune.customize.supernet import (
    FULL,
    SubnetSpec,
    accumulate_importance,
    all_specs,
    check_supernet,
    extract_subnet,
    reorder_by_importance,
    supernet_forward,
)
from edgetune.models import build_vit, vit_shape
from edgetune.models.vit import ViTShape


@pytest.fixture
def vit():
    torch.manual_seed(0)
    return build_vit(ViTShape(32, 8, 48, 6, 4, 128), 5).eval()


def test_spec_follows_acme_widths_and_depths():
    assert [SubnetSpec(w).heads(12) for w in (0.25, 0.5, 0.75, 1.0)] == [3, 6, 9, 12]
    assert [SubnetSpec(w).units(3072, 12) for w in (0.25, 0.5, 0.75, 1.0)] == [768, 1536, 2304, 3072]
    assert SubnetSpec(depth=0.5).blocks(12) == (0, 2, 4, 6, 8, 10)
    assert SubnetSpec(depth=0.25).blocks(12) == (0, 4, 8)
    assert SubnetSpec(depth=0.75).blocks(12) == (0, 1, 2, 4, 5, 6, 8, 9, 10)
    assert len(all_specs()) == 16 and all_specs()[0] == FULL
    with pytest.raises(ValueError, match=r"SubnetSpec.width=0 must lie in \(0, 1\]"):
        SubnetSpec(width=0)


def test_full_spec_reproduces_the_plain_vit(vit):
    x = torch.rand(3, 3, 32, 32)
    assert torch.equal(supernet_forward(vit, x), vit(x))
    logits, hidden = supernet_forward(vit, x, FULL, return_hidden=True)
    assert len(hidden) == 7 and all(h.shape == (3, 17, 48) for h in hidden)


@pytest.mark.parametrize("spec", all_specs(), ids=str)
def test_extracted_subnet_reproduces_the_supernet(vit, spec):
    x = torch.rand(3, 3, 32, 32)
    sub = extract_subnet(vit, spec).eval()
    torch.testing.assert_close(sub(x), supernet_forward(vit, x, spec), atol=1e-5, rtol=1e-5)
    shape = vit_shape(sub)
    assert shape.depth == len(spec.blocks(6)) and shape.num_heads == spec.heads(4)
    assert shape.mlp_hidden == spec.units(128, 4)


def test_reordering_keeps_the_full_function_and_sorts_importance(vit):
    x, y = torch.rand(8, 3, 32, 32), torch.randint(0, 5, (8,))
    before = vit(x)
    F.cross_entropy(vit(x), y).backward()
    scores = accumulate_importance(vit)
    assert scores["heads"].shape == (6, 4) and scores["units"].shape == (6, 128)
    reorder_by_importance(vit, scores)
    torch.testing.assert_close(vit(x), before, atol=1e-5, rtol=1e-5)
    vit.zero_grad()
    F.cross_entropy(vit(x), y).backward()
    again = accumulate_importance(vit)
    torch.testing.assert_close(
        again["heads"], scores["heads"].sort(dim=1, descending=True).values, rtol=1e-4, atol=1e-7
    )


def test_head_importance_equals_the_mask_gradient(vit):
    """|Σ W_proj ⊙ ∇W_proj| over a head's columns is |∂L/∂m| for a mask m on that head's output."""
    x, y = torch.rand(4, 3, 32, 32), torch.randint(0, 5, (4,))
    block = vit.blocks[2]
    mask = torch.ones(4, requires_grad=True)
    hook = block.attn.proj.register_forward_pre_hook(lambda _, inp: (inp[0] * mask.repeat_interleave(12),))
    F.cross_entropy(vit(x), y).backward()
    hook.remove()
    scores = accumulate_importance(vit)
    torch.testing.assert_close(scores["heads"][2], mask.grad.abs(), rtol=1e-4, atol=1e-7)


def test_one_step_gives_every_width_its_gradient(vit):
    """Training every width in one step (as DynaViTw does) reaches every parameter of the supernet."""
    vit.train()
    x, y = torch.rand(2, 3, 32, 32), torch.randint(0, 5, (2,))
    sum(F.cross_entropy(supernet_forward(vit, x, SubnetSpec(w)), y) for w in (1.0, 0.75, 0.5, 0.25)).backward()
    missing = [n for n, p in vit.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert missing == []
    # and the narrowest width alone touches only its own heads/units
    vit.zero_grad()
    F.cross_entropy(supernet_forward(vit, x, SubnetSpec(0.25)), y).backward()
    assert (
        vit.blocks[0].mlp.fc1.weight.grad[32:].abs().sum() == 0
        and vit.blocks[0].mlp.fc1.weight.grad[:32].abs().sum() > 0
    )


def test_check_supernet_refuses_other_layouts():
    odd = build_vit("edge-tiny", 3)
    odd.global_pool = "avg"
    with pytest.raises(ValueError, match="global_pool='token'"):
        check_supernet(odd)
