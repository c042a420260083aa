"""Random data and random-weight checkpoints written in the real formats, for rehearsals and tests.

Each writer produces what the matching reader in `edgetune.data.readers`, `edgetune.models` or `edgetune.strato.tasks`
accepts from a user's own download: CIFAR-100's python pickles (bytes keys, as published), class folders of JPEG
images (ImageNet, DomainNet), a Hugging Face ViT folder (`save_pretrained`), MMLU's header-less CSVs and GSM8K's
JSONL. The content is random: a rehearsal measures time and memory, never accuracy.
"""

from __future__ import annotations

import csv
import json
import pickle
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch


def write_cifar100(root: Path, train: int, test: int, classes: int = 100, seed: int = 0) -> Path:
    """root/cifar-100-python/{train,test,meta}: uint8 rows of 3·32·32 (channel planes), fine and coarse labels; keys
    as bytes, as the published (Python 2) pickles load under `encoding="bytes"`."""
    rng = np.random.default_rng(seed)
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True, exist_ok=True)
    for split, n in (("train", train), ("test", test)):
        labels = [int(i % classes) for i in range(n)]
        entry = {
            b"batch_label": f"{split} batch 1 of 1",
            b"data": rng.integers(0, 256, (n, 3 * 32 * 32), dtype=np.uint8),
            b"fine_labels": labels,
            b"coarse_labels": [label // 5 for label in labels],
            b"filenames": [f"{split}_{i}.png" for i in range(n)],
        }
        _pickle(folder / split, entry)
    names = [f"class_{c:03d}" for c in range(classes)]
    _pickle(folder / "meta", {b"fine_label_names": names, b"coarse_label_names": names[:20]})
    return folder


def _pickle(path: Path, obj) -> None:
    with path.open("wb") as f:
        pickle.dump(obj, f, protocol=2)


def write_image_folders(
    root: Path, splits: dict[str, int], classes: int, size: int = 64, seed: int = 0, suffix: str = ".JPEG"
) -> Path:
    """root/<split>/<class>/<i><suffix>: `splits[split]` random images per class (ImageNet's and DomainNet's
    layout; a split is `train`/`val` there, a domain name here)."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    for split, per_class in splits.items():
        for c in range(classes):
            folder = root / split / f"n{c:08d}"
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(per_class):
                pixels = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(folder / f"{i}{suffix}", quality=90)
    return root


def write_vit_checkpoint(
    folder: Path,
    *,
    image_size: int = 224,
    patch_size: int = 16,
    hidden: int = 768,
    layers: int = 12,
    heads: int = 12,
    mlp: int = 3072,
    num_labels: int = 1000,
    seed: int = 0,
) -> Path:
    """A random-weight `ViTForImageClassification` saved with `save_pretrained` (google/vit-base-patch16-224's
    shape by default: its `qkv_bias` and LayerNorm eps 1e-12 included)."""
    from transformers import ViTConfig, ViTForImageClassification

    torch.manual_seed(seed)
    config = ViTConfig(
        image_size=image_size,
        patch_size=patch_size,
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        intermediate_size=mlp,
        num_labels=num_labels,
    )
    ViTForImageClassification(config).save_pretrained(folder)
    return folder


def write_mmlu(root: Path, subjects: Sequence[str] = ("anatomy", "astronomy"), per_split: int = 8, seed: int = 0):
    """root/{dev,val,test}/<subject>_<split>.csv: header-less rows of question, A–D and the answer letter."""
    rng = np.random.default_rng(seed)
    for split in ("dev", "val", "test"):
        for subject in subjects:
            path = root / split / f"{subject}_{split}.csv"
            path.parent.mkdir(parents=True, exist_ok=True)
            rows = []
            for i in range(per_split):
                a, b = (int(v) for v in rng.integers(0, 100, 2))
                choices = [str(a + b + d) for d in range(4)]
                rows.append([f"In {subject}, what is {a} + {b}? ({i})", *choices, "A"])
            with path.open("w", newline="", encoding="utf-8") as f:
                csv.writer(f).writerows(rows)
    return root


def write_gsm8k(root: Path, train: int = 32, test: int = 16, seed: int = 0) -> Path:
    """root/{train,test}.jsonl: {"question", "answer": "... #### <number>"} per line."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    for split, n in (("train", train), ("test", test)):
        lines = []
        for _ in range(n):
            a, b = (int(v) for v in rng.integers(1, 1000, 2))
            lines.append(
                json.dumps(
                    {"question": f"What is {a} + {b}?", "answer": f"{a}+{b}=<<{a}+{b}={a + b}>>{a + b}\n#### {a + b}"}
                )
            )
        (root / f"{split}.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return root
