"""Real datasets stay on disk: `LazyImages` decodes only what a loop asks for, and the values are those of the eager
tensors the embedded path holds; large token features go to a memory-mapped file."""

import numpy as np
import torch
from torch.utils.data import Dataset, Subset

from edgetune.data.streaming import LazyImages, first, labels_of
from edgetune.training import accuracy, finetune


class Counting(Dataset):
    """A dataset that counts how many images it decoded."""

    def __init__(self, n=100):
        g = torch.Generator().manual_seed(0)
        self.images = torch.rand(n, 3, 8, 8, generator=g)
        self.targets = torch.randint(0, 3, (n,), generator=g).tolist()
        self.decoded = 0

    def __len__(self):
        return len(self.targets)

    def __getitem__(self, i):
        self.decoded += 1
        return self.images[i], self.targets[i]


def test_lazy_images_index_like_the_tensor_they_stand_for():
    data = Counting()
    lazy = LazyImages(data)
    assert len(lazy) == 100 and lazy.shape == (100, 3, 8, 8)
    assert torch.equal(lazy[5], data.images[5]) and torch.equal(lazy[10:20], data.images[10:20])
    assert torch.equal(lazy[torch.tensor(7)], data.images[7]) and torch.equal(lazy[np.int64(7)], data.images[7])
    idx = torch.tensor([3, 3, 97, 0])
    assert torch.equal(lazy[idx], data.images[idx])
    view = first(lazy, 30)
    assert isinstance(view, LazyImages) and len(view) == 30 and torch.equal(view[29], data.images[29])
    assert torch.equal(first(data.images, 30), data.images[:30])
    assert labels_of(Subset(data, [4, 2])).tolist() == [data.targets[4], data.targets[2]]


def test_a_loop_on_lazy_images_decodes_only_its_batches_and_matches_the_eager_run():
    data = Counting()
    labels = torch.tensor(data.targets)

    def model():
        torch.manual_seed(0)
        return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(192, 3))

    eager, lazy = model(), model()
    kwargs = dict(steps=3, batch_size=4, lr=0.1, seed=0, device=torch.device("cpu"))
    losses = finetune(eager, (data.images, labels), **kwargs)
    data.decoded = 0
    assert finetune(lazy, (LazyImages(data), labels), **kwargs) == losses
    assert data.decoded == 12, "3 steps × 4 images, never the whole dataset"
    assert all(torch.equal(a, b) for a, b in zip(eager.state_dict().values(), lazy.state_dict().values(), strict=True))
    data.decoded = 0
    cpu = torch.device("cpu")
    assert accuracy(lazy, (LazyImages(data), labels), cpu, batch_size=32) == accuracy(
        eager, (data.images, labels), cpu, batch_size=32
    )
    assert data.decoded == 100


def test_large_token_features_go_to_a_memory_mapped_file(monkeypatch, tmp_path):
    from edgetune.customize import core
    from edgetune.models import build_vit

    monkeypatch.setenv("EDGETUNE_RUNS", str(tmp_path))
    torch.manual_seed(0)
    vit = build_vit("edge-tiny", 3)
    data = Counting(10)
    data.images = torch.rand(10, 3, 32, 32)
    in_memory = core.features(vit, data.images, torch.device("cpu"), batch_size=4)
    shapes = []
    memmap = core._memmap
    monkeypatch.setattr(core, "_memmap", lambda shape: shapes.append(shape) or memmap(shape))
    assert core.features(vit, data.images, torch.device("cpu"), batch_size=4) is not None and shapes == []
    monkeypatch.setattr(core, "MEMMAP_BYTES", 0)
    data.decoded = 0
    mapped = core.features(vit, LazyImages(data), torch.device("cpu"), batch_size=4)
    assert shapes == [(10, 17, 48)] and data.decoded == 10 and torch.equal(mapped, in_memory)
    maps = open("/proc/self/maps").read()
    assert str(tmp_path / "tmp") in maps and "(deleted)" in maps, "mapped from an unlinked file"
    assert list((tmp_path / "tmp").iterdir()) == [], "nothing left behind on disk"


def test_augmentation_seeds_stay_in_torchs_range_for_any_seed():
    from edgetune.data.streaming import StepBatches

    batches = StepBatches(lambda step: [torch.tensor([0, 1])], start=0, steps=2, seed=2**32 - 1)
    seeds = [s for batch in batches for _, s in batch]
    assert len(set(seeds)) == 4 and all(0 <= s < 2**63 for s in seeds)
    torch.manual_seed(max(seeds))  # accepted


def test_a_shifted_real_domain_stays_lazy_and_each_image_is_the_same_in_any_batch():
    from edgetune.data.scenes import SceneSpec, domain_stream
    from edgetune.data.sources import Source

    data = Counting(40)
    data.images = torch.rand(40, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    labels = torch.tensor(data.targets)
    source = Source("cifar100", SceneSpec(2, 16), (LazyImages(data), labels), (LazyImages(data), labels))
    domain = domain_stream(1, seed=0)[0]
    data.decoded = 0
    x, y = source.domain(domain, 10, seed=3)
    assert isinstance(x, LazyImages) and len(x) == 10 and data.decoded == 0  # nothing decoded yet
    batch = x[torch.arange(10)]
    assert torch.equal(x[4], batch[4]) and torch.equal(x[2:5], batch[2:5])
    assert not torch.equal(batch, data.images[:10]) and float(batch.min()) >= 0 and float(batch.max()) <= 1
    assert len(y) == 10 and source.domain(domain, 10, seed=3)[1].tolist() == y.tolist()


def test_batches_from_tensors_are_the_draws_the_loop_made_before():
    from edgetune.data.streaming import batches
    from edgetune.training import draw_batch

    x, y = torch.rand(50, 3, 4, 4), torch.randint(0, 3, (50,))
    g1, g2 = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    stream = batches((x, y), 8, 6, g1, seed=5, start=2)
    for _ in range(4):  # the loop draws from g between batches too: the order is kept
        a, b = next(stream), draw_batch(x, y, 8, g2)
        assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
        assert torch.equal(torch.rand(2, generator=g1), torch.rand(2, generator=g2))
    assert next(stream, None) is None  # steps 2..5: four batches


def test_batches_from_a_real_dataset_come_from_dataloader_workers_whatever_their_number_and_resume():
    from edgetune.data.streaming import batches, normalize

    data = Counting(40)
    lazy = (LazyImages(data), torch.tensor(data.targets))
    g = torch.Generator().manual_seed(0)
    straight = list(batches(lazy, 4, 5, g, seed=3, workers=0))
    two = list(batches(lazy, 4, 5, g, seed=3, workers=2))
    resumed = list(batches(lazy, 4, 5, g, seed=3, start=3, workers=2))
    assert len(straight) == 5
    assert all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in zip(straight, two, strict=True))
    assert all(torch.equal(a[0], b[0]) for a, b in zip(straight[3:], resumed, strict=True))
    x, labels = straight[0]
    assert x.min() >= -1 and x.max() <= 1 and labels.dtype == torch.long
    first_image = x[0]  # normalized ([-1, 1]) images and their own labels
    index = next(i for i in range(40) if torch.allclose(normalize(data.images[i]), first_image))
    assert labels[0] == data.targets[index]
    assert not any(torch.equal(straight[0][0], b[0]) for b in straight[1:])  # each step its own indices
