import pytest
import torch

from edgetune.data.partition import client_classes, dirichlet_split, label_group_split, label_histogram


def test_client_classes_follow_acme_lists():
    c2 = client_classes("C2", 100)
    assert c2[0] == c2[1] == c2[2] == list(range(0, 25)) and c2[3] == c2[4] == list(range(25, 50))
    c3 = client_classes("C3", 100)
    assert c3[2] == list(range(0, 13)) + list(range(50, 61))  # 13 of L1 + 11 of L3, as in the original
    c4 = client_classes("C4", 100)
    assert c4[2] == list(range(0, 9)) + list(range(25, 33)) + list(range(50, 57))  # 9 + 8 + 7
    assert c4[4] == list(range(0, 11)) + list(range(75, 89))  # 11 of L1 + 14 of L4
    assert all(c == list(range(25)) for c in client_classes("IID", 100))


def test_label_group_split_samples_per_class():
    labels = torch.arange(2000) % 20  # 100 samples per class
    splits = label_group_split(labels, "C3", fraction=0.1, seed=0)
    classes = client_classes("C3", 20)
    for idx, allowed in zip(splits, classes, strict=True):
        assert len(idx) == 10 * len(allowed) and len(set(idx.tolist())) == len(idx)
        assert set(labels[idx].tolist()) == set(allowed)
    assert not torch.equal(splits[0], splits[3])  # same classes, drawn independently
    with pytest.raises(ValueError, match="unknown label-group setting 'C9'"):
        label_group_split(labels, "C9")


def test_dirichlet_split_is_a_partition_and_alpha_controls_skew():
    labels = torch.arange(5000) % 10

    def skew(alpha):
        splits = dirichlet_split(labels, 5, alpha, seed=0)
        assert torch.equal(torch.sort(torch.cat(splits)).values, torch.arange(5000))  # disjoint and complete
        hist = label_histogram(labels, splits, 10).double()
        return (hist.max(0).values / hist.sum(0)).mean().item()  # mean share of the largest client per class

    assert skew(0.1) > 0.7 > skew(100.0)
    assert skew(100.0) < 0.35  # near-uniform: 5 clients get about 0.2 each
    assert torch.equal(torch.cat(dirichlet_split(labels, 5, 0.5, 1)), torch.cat(dirichlet_split(labels, 5, 0.5, 1)))
