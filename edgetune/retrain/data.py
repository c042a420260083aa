"""The retraining section's data: a labelled offline source, a stream of target domains (an unlabelled window the
edge retrains on, a labelled held-out set it is scored on) and simulated targets for the scaling law.

Embedded scenes by default: the source mixes clear scenes with two mild source domains (as BlockTrainer's source
mixes ImageNet and SYNSIGNS) and the stream cycles weather, lighting and density shifts. The paper profile reads
ImageFolder domains (DomainNet's layout: data/<root>/<domain>/<class>/<image>).

Simulated targets follow the original's `gen_random_sim_policy`: a random, fixed sequence of image operations
(shear, translate, rotate, colour, greyscale, posterize, solarize, contrast, sharpness, brightness, autocontrast)
applied to source images. The pool here adds image-level weather and lighting (fog, rain, snow, darkness, colour
cast, through `apply_domain`) so that simulated shifts span the kind the edge meets; the stream's own domains (their
backgrounds, clutter and factor mixes, their rendered scenes) are never seen by the law.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torchvision.transforms.v2.functional as TF
from torch.utils.data import ConcatDataset, Subset

from edgetune.data.readers import open_dataset, to_tensor_resized
from edgetune.data.scenes import CLEAR, Domain, SceneSpec, apply_domain, domain_stream, render_scenes
from edgetune.data.streaming import LazyImages, labels_of
from edgetune.models import image_size
from edgetune.paths import data_dir
from edgetune.retrain.config import RetrainingConfig
from edgetune.training import derive_seed

SOURCE_DOMAINS = (
    CLEAR,
    Domain(name="overcast", brightness=-0.2, contrast=0.2, background="sky"),
    Domain(name="haze", fog=0.2, background="urban"),
)
OPERATIONS = (
    "shear",
    "translate",
    "rotate",
    "colour",
    "grey",
    "posterize",
    "solarize",
    "contrast",
    "sharpness",
    "brightness",
    "autocontrast",
    "fog",
    "rain",
    "snow",
    "dark",
    "cast",
)
WEATHER = ("fog", "rain", "snow", "cast")  # Domain factors of the same names


@dataclass(frozen=True)
class Window:
    """One target domain: unlabelled images to retrain on, labelled held-out images to score on."""

    name: str
    unlabelled: torch.Tensor  # (W, 3, S, S) in [0, 1]
    test: tuple[torch.Tensor, torch.Tensor]


@dataclass(frozen=True)
class Stream:
    source: tuple[torch.Tensor, torch.Tensor]  # labelled source (train)
    source_test: tuple[torch.Tensor, torch.Tensor]
    windows: list[Window]


def load_stream(cfg: RetrainingConfig) -> Stream:
    if cfg.data == "scenes":
        return _scenes_stream(cfg)
    return _folder_stream(cfg)


def _scenes_stream(cfg: RetrainingConfig) -> Stream:
    spec = SceneSpec(cfg.num_classes, image_size(cfg.model))
    per = math.ceil(cfg.train_size / len(SOURCE_DOMAINS))
    parts = [
        render_scenes(spec, d, per, seed=derive_seed(cfg.seed, "source", i, "train"))
        for i, d in enumerate(SOURCE_DOMAINS)
    ]
    source = tuple(torch.cat(t)[: cfg.train_size] for t in zip(*parts, strict=True))
    tests = [
        render_scenes(spec, d, cfg.test_size, seed=derive_seed(cfg.seed, "source", i, "test"))
        for i, d in enumerate(SOURCE_DOMAINS)
    ]
    source_test = tuple(torch.cat(t) for t in zip(*tests, strict=True))
    windows = []
    for i, domain in enumerate(domain_stream(cfg.num_domains, seed=cfg.seed)):
        x, _ = render_scenes(spec, domain, cfg.window_size, seed=derive_seed(cfg.seed, "window", i, "train"))
        test = render_scenes(spec, domain, cfg.test_size, seed=derive_seed(cfg.seed, "window", i, "test"))
        windows.append(Window(domain.name, x, test))
    return Stream(source, source_test, windows)


def _folder_stream(cfg: RetrainingConfig) -> Stream:
    """ImageFolder domains: each source domain split 90/10 into train/test; each target domain into a window and a
    held-out part. Every domain must list the same classes. Images stay on disk (`LazyImages`: decoded when a loop
    draws them); only the labels are read up front."""
    root, transform = data_dir() / cfg.data_root, to_tensor_resized(image_size(cfg.model, cfg.num_classes))
    g = torch.Generator().manual_seed(cfg.seed)
    classes, loaded = None, {}
    for name in dict.fromkeys((*cfg.source_domains, *cfg.target_domains)):
        dataset = open_dataset("imagefolder", root, split=name, transform=transform)
        if classes is None:
            classes = dataset.classes
        elif dataset.classes != classes:
            raise ValueError(
                f"domain {name!r} under {root} has classes {dataset.classes[:5]}…, expected the same "
                f"class folders as {cfg.source_domains[0]!r} ({classes[:5]}…)"
            )
        loaded[name] = Subset(dataset, torch.randperm(len(dataset), generator=g).tolist())
    if len(classes) != cfg.num_classes:
        raise ValueError(f"{root} has {len(classes)} classes; set num_classes={len(classes)}")
    src = [loaded[n] for n in cfg.source_domains]
    cut = [max(1, len(d) // 10) for d in src]
    train = ConcatDataset([Subset(d, range(c, len(d))) for d, c in zip(src, cut, strict=True)])
    train = Subset(train, range(min(cfg.train_size, len(train))))
    test = ConcatDataset([Subset(d, range(c)) for d, c in zip(src, cut, strict=True)])
    windows = []
    for i in range(cfg.num_domains):
        name = cfg.target_domains[i % len(cfg.target_domains)]
        domain = loaded[name]
        n_test = min(cfg.test_size, len(domain) // 2)
        start = n_test + (i // len(cfg.target_domains)) * cfg.window_size % max(1, len(domain) - n_test)
        window = Subset(domain, range(start, min(start + cfg.window_size, len(domain))))  # a rolling chunk
        held_out = Subset(domain, range(n_test))
        windows.append(Window(f"{name}-{i // len(cfg.target_domains)}", LazyImages(window), _pair(held_out)))
    return Stream(_pair(train), _pair(test), windows)


def _pair(dataset) -> tuple[LazyImages, torch.Tensor]:
    return LazyImages(dataset), labels_of(dataset)


def simulated_target(images: torch.Tensor, seed: int) -> tuple[torch.Tensor, str]:
    """Source images under a random fixed policy of 1–4 operations at random magnitudes (BlockTrainer's simulated
    target). Returns the shifted images and a short description of the policy."""
    g = torch.Generator().manual_seed(seed)
    count = int(torch.randint(1, 5, (1,), generator=g))
    picks = torch.randperm(len(OPERATIONS), generator=g)[:count].tolist()
    out, names = images.clone(), []
    for k in picks:
        m = float(torch.rand(1, generator=g))  # magnitude in [0, 1)
        out = _operation(out, OPERATIONS[k], m)
        names.append(f"{OPERATIONS[k]}{m:.1f}")
    return out.clamp(0, 1), "+".join(names)


def _operation(x: torch.Tensor, name: str, m: float) -> torch.Tensor:
    size = x.shape[-1]
    if name == "shear":
        return TF.affine(x, angle=0.0, translate=[0, 0], scale=1.0, shear=[30 * m, 0.0])
    if name == "translate":
        return TF.affine(x, angle=0.0, translate=[int(0.3 * m * size), 0], scale=1.0, shear=[0.0, 0.0])
    if name == "rotate":
        return TF.rotate(x, 60 * m - 30)
    if name == "colour":
        return TF.adjust_saturation(x, 1 + 1.8 * (m - 0.5))  # AutoAugment's Color: 1 ± 0.9, never negative
    if name == "grey":
        return TF.rgb_to_grayscale(x, num_output_channels=3)
    if name == "posterize":
        bits = 2 + int(4 * m)
        return TF.posterize((x * 255).to(torch.uint8), bits).float() / 255
    if name == "solarize":
        return TF.solarize(x, 1.0 - 0.6 * m)
    if name == "contrast":
        return TF.adjust_contrast(x, 0.3 + 1.4 * m)
    if name == "sharpness":
        return TF.adjust_sharpness(x, 3 * m)
    if name == "brightness":
        return TF.adjust_brightness(x, 0.4 + 1.2 * m)
    if name == "dark":
        return apply_domain(x, Domain(name="dark", brightness=-0.8 * m))
    if name in WEATHER:
        return apply_domain(x, Domain(name=name, **{name: 0.8 * m}))
    return TF.autocontrast(x)
