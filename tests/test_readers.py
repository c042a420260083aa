"""Readers on tiny fixtures written in the real on-disk formats (CIFAR-100 pickles, Stanford Cars .mat, ImageFolder)."""

from __future__ import annotations

import pickle
import re
from pathlib import Path

import numpy as np
import pytest
import scipy.io as sio
import torch
from PIL import Image
from torchvision import datasets

from edgetune.data.readers import (
    CIFAR100_LAYOUT,
    IMAGE_FOLDER_LAYOUT,
    STANFORD_CARS_LAYOUT,
    DatasetLayoutError,
    cifar100,
    image_folder,
    open_dataset,
    stanford_cars,
    to_tensor_resized,
)

CIFAR_CLASSES = ["apple", "bear", "cloud"]
CAR_CLASSES = ["AM General Hummer SUV 2000", "Acura RL Sedan 2012", "Audi R8 Coupe 2012"]


def _cifar_images(n: int, offset: int) -> np.ndarray:
    """(n, 3072) uint8 rows in the release's order (1024 R, 1024 G, 1024 B); image i is filled with (i+offset)*10."""
    values = (np.arange(n, dtype=np.uint8) + offset) * 10
    rows = np.repeat(values[:, None], 3072, axis=1)
    rows[:, 1024:2048] += 1  # G = R + 1, B = R + 2: checks the CHW -> HWC conversion
    rows[:, 2048:] += 2
    rows[:, 2 * 32 + 5] = 255  # R of the pixel at row 2, column 5: checks the row-major 32x32 layout
    return rows


def _write_pickle(path: Path, obj: object) -> None:
    with path.open("wb") as f:
        pickle.dump(obj, f, protocol=2)


def _write_cifar(root: Path, bytes_keys: bool = False) -> Path:
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True)
    key = (lambda k: k.encode()) if bytes_keys else (lambda k: k)
    train = {"batch_label": "training batch 1 of 1", "data": _cifar_images(6, 0), "fine_labels": [0, 1, 2, 2, 1, 0]}
    test = {"batch_label": "testing batch 1 of 1", "data": _cifar_images(4, 10), "fine_labels": [2, 2, 0, 1]}
    for name, entry in [("train", train), ("test", test)]:
        entry |= {
            "coarse_labels": [0] * len(entry["fine_labels"]),
            "filenames": [f"{name}_{i}.png" for i in range(len(entry["data"]))],
        }
        _write_pickle(folder / name, {key(k): v for k, v in entry.items()})
    _write_pickle(folder / "meta", {key("fine_label_names"): CIFAR_CLASSES, key("coarse_label_names"): ["misc"]})
    return folder


@pytest.mark.parametrize("bytes_keys", [False, True])
def test_cifar100_reads_train_split(tmp_path: Path, bytes_keys: bool) -> None:
    _write_cifar(tmp_path, bytes_keys)
    ds = cifar100(tmp_path, train=True)
    assert len(ds) == 6
    assert ds.classes == CIFAR_CLASSES
    assert ds.class_to_idx == {"apple": 0, "bear": 1, "cloud": 2}
    assert ds.targets == [0, 1, 2, 2, 1, 0]
    image, label = ds[3]
    assert isinstance(image, Image.Image) and image.size == (32, 32) and image.mode == "RGB"
    assert label == 2
    assert image.getpixel((5, 7)) == (30, 31, 32)
    assert image.getpixel((5, 2)) == (255, 31, 32)  # PIL takes (x, y) = (column, row)
    assert image.getpixel((2, 5)) == (30, 31, 32)
    assert ds.data.shape == (6, 32, 32, 3)


def test_cifar100_test_split_with_transform(tmp_path: Path) -> None:
    _write_cifar(tmp_path)
    ds = open_dataset("cifar100", root=tmp_path, split="test", transform=to_tensor_resized(16))
    assert len(ds) == 4
    assert [ds[i][1] for i in range(4)] == [2, 2, 0, 1]
    x, _ = ds[1]
    assert x.shape == (3, 16, 16) and x.dtype == torch.float32
    torch.testing.assert_close(x[:, 15, 15], torch.tensor([110, 111, 112]) / 255.0)


def test_torchvision_cifar100_refuses_non_release_files(tmp_path: Path) -> None:
    """Why cifar100() reads the pickles itself: torchvision md5-checks every file against the official release."""
    _write_cifar(tmp_path)
    with pytest.raises(RuntimeError, match="not found or corrupted"):
        datasets.CIFAR100(str(tmp_path), train=True, download=False)


def test_cifar100_verify_md5_rejects_fixture(tmp_path: Path) -> None:
    folder = _write_cifar(tmp_path)
    with pytest.raises(DatasetLayoutError, match="md5") as info:
        cifar100(tmp_path, train=True, verify_md5=True)
    assert str(folder / "train") in str(info.value)


def test_cifar100_missing_root(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"
    with pytest.raises(DatasetLayoutError) as info:
        cifar100(missing, train=True)
    message = str(info.value)
    assert str(missing / "cifar-100-python") in message
    assert CIFAR100_LAYOUT in message and "data/README.md" in message
    assert isinstance(info.value, FileNotFoundError)


def test_cifar100_missing_split_file(tmp_path: Path) -> None:
    folder = _write_cifar(tmp_path)
    (folder / "test").unlink()
    with pytest.raises(DatasetLayoutError, match="file not found") as info:
        cifar100(tmp_path, train=False)
    assert str(folder / "test") in str(info.value)


@pytest.mark.parametrize(
    ("entry", "problem"),
    [
        ({"data": np.zeros((2, 3072), np.uint8)}, "lacks key"),
        ({"data": np.zeros((2, 1024), np.uint8), "fine_labels": [0, 1]}, "expected uint8 (N, 3072)"),
        ({"data": np.zeros((2, 3072), np.float32), "fine_labels": [0, 1]}, "expected uint8 (N, 3072)"),
        ({"data": np.zeros((2, 3072), np.uint8), "fine_labels": [0]}, "one per image"),
        ({"data": np.zeros((2, 3072), np.uint8), "fine_labels": [0, 3]}, "one per image"),
        ([1, 2, 3], "not a dict"),
    ],
)
def test_cifar100_malformed_pickle_names_file(tmp_path: Path, entry: object, problem: str) -> None:
    folder = _write_cifar(tmp_path)
    _write_pickle(folder / "train", entry)
    with pytest.raises(DatasetLayoutError, match=re.escape(problem)) as info:
        cifar100(tmp_path, train=True)
    assert str(folder / "train") in str(info.value)


def test_cifar100_garbage_meta_names_file(tmp_path: Path) -> None:
    folder = _write_cifar(tmp_path)
    (folder / "meta").write_bytes(b"this is not a pickle")
    with pytest.raises(DatasetLayoutError, match="not a readable pickle") as info:
        cifar100(tmp_path, train=True)
    assert str(folder / "meta") in str(info.value)


# Stanford Cars: (fname, 1-based class, (width, height)) per split, as in the devkit's annotation structs.
CARS = {
    "train": [("00001.jpg", 1, (40, 30)), ("00002.jpg", 3, (24, 36)), ("00003.jpg", 2, (50, 20))],
    "test": [("00001.jpg", 2, (30, 30)), ("00002.jpg", 2, (20, 44))],
}


def _annotations(rows: list[tuple[str, int, tuple[int, int]]]) -> np.ndarray:
    """A 1xN struct array with the devkit's fields (bbox_*, class, fname)."""
    fields = ["bbox_x1", "bbox_y1", "bbox_x2", "bbox_y2", "class", "fname"]
    records = [(1, 1, w, h, np.uint8(label), fname) for fname, label, (w, h) in rows]
    return np.array([records], dtype=[(f, object) for f in fields])


def _write_cars(root: Path) -> Path:
    base = root / "stanford_cars"
    (base / "devkit").mkdir(parents=True)
    sio.savemat(base / "devkit" / "cars_meta.mat", {"class_names": np.array([CAR_CLASSES], dtype=object)})
    sio.savemat(base / "devkit" / "cars_train_annos.mat", {"annotations": _annotations(CARS["train"])})
    sio.savemat(base / "cars_test_annos_withlabels.mat", {"annotations": _annotations(CARS["test"])})
    for split, rows in CARS.items():
        (base / f"cars_{split}").mkdir()
        for i, (fname, _, size) in enumerate(rows):
            Image.new("RGB", size, (10 * i, 100, 200)).save(base / f"cars_{split}" / fname, quality=95)
    return base


def test_stanford_cars_train(tmp_path: Path) -> None:
    _write_cars(tmp_path)
    ds = stanford_cars(tmp_path, "train")
    assert isinstance(ds, datasets.StanfordCars)
    assert len(ds) == 3
    assert ds.classes == CAR_CLASSES
    assert ds.class_to_idx["Audi R8 Coupe 2012"] == 2
    items = [ds[i] for i in range(3)]
    assert [int(label) for _, label in items] == [0, 2, 1]
    assert [image.size for image, _ in items] == [(40, 30), (24, 36), (50, 20)]


def test_stanford_cars_test_split_with_transform(tmp_path: Path) -> None:
    _write_cars(tmp_path)
    ds = open_dataset("stanford_cars", root=tmp_path, split="test", transform=to_tensor_resized((8, 12)))
    assert len(ds) == 2
    x, label = ds[1]
    assert x.shape == (3, 8, 12)
    assert int(label) == 1


def test_stanford_cars_missing_root(tmp_path: Path) -> None:
    with pytest.raises(DatasetLayoutError) as info:
        stanford_cars(tmp_path / "data", "train")
    message = str(info.value)
    assert str(tmp_path / "data" / "stanford_cars") in message
    assert STANFORD_CARS_LAYOUT in message


@pytest.mark.parametrize(
    ("relative", "split"),
    [
        ("devkit/cars_meta.mat", "train"),
        ("devkit/cars_train_annos.mat", "train"),
        ("cars_test_annos_withlabels.mat", "test"),
        ("cars_test/00002.jpg", "test"),
    ],
)
def test_stanford_cars_missing_file(tmp_path: Path, relative: str, split: str) -> None:
    base = _write_cars(tmp_path)
    (base / relative).unlink()
    with pytest.raises(DatasetLayoutError, match="not found") as info:
        stanford_cars(tmp_path, split)
    assert str(base / relative) in str(info.value)


def test_stanford_cars_annotations_without_class_field(tmp_path: Path) -> None:
    base = _write_cars(tmp_path)
    bad = np.array([[("00001.jpg",), ("00002.jpg",)]], dtype=[("fname", object)])
    sio.savemat(base / "devkit" / "cars_train_annos.mat", {"annotations": bad})
    with pytest.raises(DatasetLayoutError, match="fields fname, class") as info:
        stanford_cars(tmp_path, "train")
    assert str(base / "devkit" / "cars_train_annos.mat") in str(info.value)


def test_stanford_cars_rejects_unknown_split(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="'train' or 'test'"):
        stanford_cars(tmp_path, "val")


def _write_image_folder(root: Path) -> Path:
    for c, name in enumerate(["stop", "yield"]):
        (root / name).mkdir(parents=True)
        for i in range(2):
            Image.new("RGB", (10 + i, 20 + c), (255 * c, 0, 0)).save(root / name / f"{i}.png")
    return root


def test_image_folder(tmp_path: Path) -> None:
    _write_image_folder(tmp_path / "gtsrb" / "train")
    ds = open_dataset("imagefolder", root=tmp_path / "gtsrb", split="train")
    assert isinstance(ds, datasets.ImageFolder)
    assert len(ds) == 4
    assert ds.classes == ["stop", "yield"]
    assert ds.targets == [0, 0, 1, 1]
    image, label = ds[3]
    assert image.size == (11, 21) and label == 1 and image.getpixel((0, 0)) == (255, 0, 0)


def test_image_folder_root_itself_with_transform(tmp_path: Path) -> None:
    root = _write_image_folder(tmp_path / "clipart")
    ds = image_folder(root, transform=to_tensor_resized(4))
    assert ds[0][0].shape == (3, 4, 4)
    assert len(open_dataset("imagefolder", root=root, split=None)) == 4


def test_image_folder_missing_and_empty(tmp_path: Path) -> None:
    with pytest.raises(DatasetLayoutError) as info:
        image_folder(tmp_path / "caltech256")
    assert str(tmp_path / "caltech256") in str(info.value) and IMAGE_FOLDER_LAYOUT in str(info.value)
    (tmp_path / "caltech256").mkdir()
    with pytest.raises(DatasetLayoutError, match="no class subfolders"):
        image_folder(tmp_path / "caltech256")
    (tmp_path / "caltech256" / "001.ak47").mkdir()
    (tmp_path / "caltech256" / "001.ak47" / "notes.txt").write_text("no images here")
    with pytest.raises(DatasetLayoutError, match="Found no valid file for the classes 001.ak47"):
        image_folder(tmp_path / "caltech256")


def test_open_dataset_unknown_name() -> None:
    with pytest.raises(ValueError, match="cifar100, stanford_cars, imagefolder"):
        open_dataset("imagenet")
    with pytest.raises(ValueError, match="'train' or 'test'"):
        open_dataset("cifar100", split="val")


class _Exploit:
    """A pickle payload that runs a shell command when loaded by plain `pickle.load`."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        import os

        return os.system, (f"touch {self.marker}",)


@pytest.mark.parametrize("where", ["train", "meta"])
def test_cifar100_crafted_pickle_runs_no_code(tmp_path: Path, where: str) -> None:
    folder = _write_cifar(tmp_path)
    marker = tmp_path / "pwned"
    entry = {"data": _cifar_images(2, 0), "fine_labels": [0, 1], "fine_label_names": _Exploit(marker)}
    with (folder / where).open("wb") as f:
        pickle.dump(entry, f)
    with pytest.raises(
        DatasetLayoutError, match=r"not a readable pickle \(it names posix\.system, which a data file"
    ) as e:
        cifar100(tmp_path, train=True)
    assert str(folder / where) in str(e.value)
    assert not marker.exists(), "the payload ran"


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_cifar100_reads_numpy_arrays_of_every_pickle_protocol(tmp_path: Path, protocol: int) -> None:
    folder = _write_cifar(tmp_path)
    entry = {"data": _cifar_images(6, 0), "fine_labels": [0, 1, 2, 2, 1, 0]}
    with (folder / "train").open("wb") as f:
        pickle.dump(entry, f, protocol=protocol)
    assert cifar100(tmp_path, train=True).targets == [0, 1, 2, 2, 1, 0]
