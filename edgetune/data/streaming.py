"""Real image datasets streamed through torch's DataLoader instead of held as tensors.

A section that trains on a real dataset (ImageNet's class folders, say) keeps a lazy torchvision dataset: images are
decoded and augmented by DataLoader worker processes, batch by batch, with pinned memory, so host and GPU memory do
not grow with the dataset. Two rules keep such a run reproducible and resumable:

* the caller says which images each batch holds (`StepBatches`: a function of the seed and the step, the same
  indices the in-memory path draws), so a resumed run sees exactly the batches a straight run would;
* every random transform of an image runs under a seed given with its index (`SeededItems`), so augmentations do
  not depend on the number of workers, on which worker decodes an image, or on a resume.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence

import torch
from torch.utils.data import ConcatDataset, DataLoader, Dataset, Sampler, Subset
from torchvision import transforms

from edgetune.training import derive_seed, draw_batch, normalize

# DeiT's evaluation crop: resize to size / 0.875, then the central `size` pixels
EVAL_CROP = 0.875


def train_transform(size: int) -> transforms.Compose:
    """A random-resized crop to `size` (bicubic), a horizontal flip and RandAugment (2 ops, magnitude 9): the
    crop-flip-RandAugment core of DeiT's recipe, as floats in [0, 1] (normalized by the training loop)."""
    return transforms.Compose(
        [
            transforms.RandomResizedCrop(size, interpolation=transforms.InterpolationMode.BICUBIC),
            transforms.RandomHorizontalFlip(),
            transforms.RandAugment(num_ops=2, magnitude=9),
            transforms.ToTensor(),
        ]
    )


def eval_transform(size: int) -> transforms.Compose:
    return transforms.Compose(
        [
            transforms.Resize(int(size / EVAL_CROP), interpolation=transforms.InterpolationMode.BICUBIC),
            transforms.CenterCrop(size),
            transforms.ToTensor(),
        ]
    )


def seeded_subset(dataset: Dataset, n: int, seed: int) -> Dataset:
    """The first `n` items of a seeded permutation of `dataset` (all of it when n ≥ its length); smaller `n` under the
    same seed gives a prefix, so data shares are nested."""
    if n >= len(dataset):
        return dataset
    order = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(seed))[:n]
    return Subset(dataset, order.tolist())


class SeededItems(Dataset):
    """`dataset` indexed by (index, seed): the item's random transforms run under `seed` (the global torch RNG is
    forked, so nothing outside the item is disturbed)."""

    def __init__(self, dataset: Dataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: tuple[int, int]):
        index, seed = key
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return self.dataset[index]


class StepBatches(Sampler):
    """Index batches in training order: `indices(step)` gives the step's micro-batches of dataset indices (a list of
    index tensors); each index is paired with a seed made of (seed, step, micro-batch, slot) for its transforms."""

    def __init__(self, indices: Callable[[int], Sequence[torch.Tensor]], start: int, steps: int, seed: int):
        self.indices, self.start, self.steps, self.seed = indices, start, steps, seed

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        for step in range(self.start, self.steps):
            for a, part in enumerate(self.indices(step)):
                yield [(int(i), derive_seed(self.seed, step, a, slot)) for slot, i in enumerate(part.tolist())]

    def __len__(self) -> int:
        return max(0, self.steps - self.start) * len(self.indices(self.start))


def step_loader(dataset: Dataset, batches: StepBatches, workers: int) -> DataLoader:
    """The batches of `batches`, in order, decoded by `workers` processes (0: in this process) into pinned memory."""
    return DataLoader(
        SeededItems(dataset),
        batch_sampler=batches,
        num_workers=workers,
        pin_memory=torch.cuda.is_available(),
        prefetch_factor=4 if workers else None,
        persistent_workers=False,
    )


@torch.no_grad()
def loader_hits(model, dataset: Dataset, device, normalize, *, batch_size: int = 256, workers: int = 0) -> list[int]:
    """Whether `model`'s top-1 prediction is right for each item of `dataset` (deterministic transforms), in order,
    streamed in batches."""
    model.eval()
    loader = DataLoader(
        dataset, batch_size=batch_size, num_workers=workers, pin_memory=torch.cuda.is_available(), shuffle=False
    )
    out = []
    for x, y in loader:
        logits = model(normalize(x).to(device, non_blocking=True))
        out += (logits.argmax(-1).cpu() == y).int().tolist()
    return out


def labels_of(dataset: Dataset) -> torch.Tensor:
    """Every label of `dataset` without decoding an image (torchvision's `targets` / `_samples`, through Subsets)."""
    if isinstance(dataset, Subset):
        return labels_of(dataset.dataset)[torch.as_tensor(list(dataset.indices), dtype=torch.long)]
    if isinstance(dataset, ConcatDataset):
        return torch.cat([labels_of(part) for part in dataset.datasets])
    if hasattr(dataset, "targets"):
        return torch.as_tensor(dataset.targets, dtype=torch.long)
    if hasattr(dataset, "_samples"):  # torchvision's StanfordCars
        return torch.tensor([int(target) for _, target in dataset._samples], dtype=torch.long)
    raise TypeError(f"{type(dataset).__name__} exposes no labels (targets or _samples)")


class LazyImages:
    """A real dataset's images, decoded on demand and indexed like the (N, 3, S, S) tensor they stand for.

    Indexing with an int, a slice or an index tensor decodes just those images (in parallel threads) and returns a
    tensor on the device this view was moved to with `.to(device)`; `len` and `shape` answer without decoding. So
    the loops that draw batches from in-memory tensors run unchanged on a dataset of any size, holding only the
    batch in flight on the host and on the GPU. `first(n)` is a lazy view of the first n images."""

    def __init__(self, dataset: Dataset, device: torch.device | str = "cpu", threads: int = 8):
        self.dataset, self.device, self.threads = dataset, torch.device(device), threads
        self._shape = None

    def __len__(self) -> int:
        return len(self.dataset)

    @property
    def shape(self) -> tuple[int, ...]:
        if self._shape is None:
            self._shape = (len(self), *self.dataset[0][0].shape)
        return self._shape

    def to(self, device) -> LazyImages:
        return LazyImages(self.dataset, device, self.threads)

    def first(self, n: int) -> LazyImages:
        return LazyImages(Subset(self.dataset, range(min(n, len(self)))), self.device, self.threads)

    def __getitem__(self, key) -> torch.Tensor:
        if isinstance(key, slice):
            indices = list(range(*key.indices(len(self))))
        elif isinstance(key, int) or (hasattr(key, "ndim") and key.ndim == 0):  # an int, a 0-d tensor or numpy int
            return self[[int(key)]][0]
        else:
            indices = torch.as_tensor(key).flatten().tolist()
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(self.threads) as pool:
            images = list(pool.map(lambda i: self.dataset[i][0], indices))
        if not images:
            return torch.empty((0, *self.shape[1:]), device=self.device)
        return torch.stack(images).to(self.device)


def first(images, n: int):
    """The first `n` images: a tensor slice, or a lazy view of a `LazyImages`."""
    return images.first(n) if isinstance(images, LazyImages) else images[:n]


def loader_workers() -> int:
    """DataLoader worker processes for a loop over a real dataset: all cores but one, at most 8."""
    return max(0, min(8, (os.cpu_count() or 1) - 1))


def batches(data, size: int, steps: int, g: torch.Generator, *, seed: int, start: int = 0, workers: int | None = None):
    """A training loop's batches, one per step from `start` to `steps`, normalized to [-1, 1] on the data's device.

    In-memory tensors: drawn by `g` when the loop asks for the next batch (`training.draw_batch`), so a loop that
    also draws from `g` keeps its order. A real dataset (`LazyImages`): each step's indices are a function of
    (`seed`, step), so DataLoader workers decode them ahead of the loop into pinned memory, and a resumed or
    re-run loop sees the same batches whatever the number of workers."""
    x, y = data
    if not isinstance(x, LazyImages):
        for _ in range(start, steps):
            yield draw_batch(x, y, size, g)
        return
    n = len(x)

    def indices(step: int) -> list[torch.Tensor]:
        draw = torch.Generator().manual_seed(derive_seed(seed, "batch", step))
        return [torch.randint(0, n, (size,), generator=draw)]

    workers = loader_workers() if workers is None else workers
    batches = iter(step_loader(x.dataset, StepBatches(indices, start, steps, seed), workers))
    try:
        for images, labels in batches:
            yield normalize(images.to(x.device, non_blocking=True)), labels.to(x.device, non_blocking=True)
    finally:
        del batches  # the last reference: the loader's iterator shuts its worker processes down (on close, too)
