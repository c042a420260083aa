"""A section's labelled image data, from one place: embedded edge scenes, or a real dataset under data/.

`load_source` returns clear-domain train/test images in [0, 1], (N, 3, S, S), with their labels: tensors for the
embedded scenes, `LazyImages` for a real dataset (decoded batch by batch, never held whole), and `Source.domain` gives
data of a shifted domain: freshly rendered scenes, or the real test images with the domain's lighting and weather
applied (the paper profile).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.utils.data import Dataset, Subset

from edgetune.data.scenes import CLEAR, Domain, SceneSpec, apply_domain, render_scenes
from edgetune.data.streaming import LazyImages, labels_of
from edgetune.paths import data_dir
from edgetune.training import derive_seed

SOURCES = ("scenes", "cifar100", "stanford_cars")


@dataclass(frozen=True)
class Source:
    """Clear-domain training and test data, and how to get data of a shifted domain."""

    name: str
    spec: SceneSpec
    train: tuple[torch.Tensor, torch.Tensor]
    test: tuple[torch.Tensor, torch.Tensor]

    def domain(self, domain: Domain, n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
        """`n` labelled images of `domain`: freshly rendered scenes, or shifted real test images."""
        if self.name == "scenes":
            return render_scenes(self.spec, domain, n, seed=seed)
        x, y = self.test
        idx = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))[:n]
        if isinstance(x, LazyImages):  # decoded and shifted image by image, when a loop asks for them
            return LazyImages(Shifted(x.dataset, idx.tolist(), domain, seed), x.device, x.threads), y[idx]
        return apply_domain(x[idx], domain, seed=seed), y[idx]


class Shifted(Dataset):
    """The images of `dataset` at `indices` under `domain`'s lighting and weather, each image under its own seed (so
    an image looks the same whichever batch decodes it)."""

    def __init__(self, dataset: Dataset, indices: list[int], domain: Domain, seed: int):
        self.dataset, self.indices, self.domain, self.seed = dataset, indices, domain, seed

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, k: int):
        image, label = self.dataset[self.indices[k]]
        return apply_domain(image[None], self.domain, seed=derive_seed(self.seed, "shift", k))[0], label


def load_source(
    name: str,
    *,
    num_classes: int,
    image_size: int,
    train_size: int,
    test_size: int,
    seed: int,
    fine_grained: bool = False,
) -> Source:
    """Embedded scenes (`fine_grained` stands in for Stanford Cars), or CIFAR-100 / Stanford Cars from data/."""
    if name not in SOURCES:
        raise ValueError(f"unknown data source {name!r}; expected one of {SOURCES}")
    spec = SceneSpec(num_classes, image_size, fine_grained) if name == "scenes" else SceneSpec(2, image_size)
    if name == "scenes":
        train = render_scenes(spec, CLEAR, train_size, seed=derive_seed(seed, "scenes", "train"))
        test = render_scenes(spec, CLEAR, test_size, seed=derive_seed(seed, "scenes", "test"))
        return Source(name, spec, train, test)
    from edgetune.data.readers import open_dataset, to_tensor_resized

    transform = to_tensor_resized(image_size)
    train = open_dataset(name, data_dir(), split="train", transform=transform)
    test = open_dataset(name, data_dir(), split="test", transform=transform)
    return Source(name, spec, _lazy(train, train_size), _lazy(test, test_size))


def _lazy(dataset, limit: int) -> tuple[LazyImages, torch.Tensor]:
    """The first `limit` items: images decoded batch by batch when a loop asks for them, labels read at once."""
    part = Subset(dataset, range(min(limit, len(dataset))))
    return LazyImages(part), labels_of(part)
