"""Readers for the real datasets a user places under `data/` (nothing is ever downloaded).

Every reader checks the on-disk layout first and raises `DatasetLayoutError` (a `FileNotFoundError`) naming the
exact path it looked at, what was wrong with it, and the layout it expects. The layouts (also in data/README.md):

CIFAR-100, the "python version" release, read by `cifar100(root, train)`::

    <root>/cifar-100-python/
        train      pickle: {'data': uint8 (50000, 3072), 'fine_labels': [int], ...}
        test       pickle: {'data': uint8 (10000, 3072), 'fine_labels': [int], ...}
        meta       pickle: {'fine_label_names': [str], ...}

Stanford Cars, torchvision's `StanfordCars` layout, read by `stanford_cars(root, split)`::

    <root>/stanford_cars/
        cars_train/*.jpg
        cars_test/*.jpg
        devkit/cars_meta.mat               (class_names)
        devkit/cars_train_annos.mat        (annotations: fname, class 1-based)
        cars_test_annos_withlabels.mat     (annotations: fname, class 1-based)

ImageFolder datasets (Caltech-256, GTSRB, one DomainNet domain), read by `image_folder(root)`::

    <root>/<class_name>/<image>.{jpg,jpeg,png,ppm,bmp,pgm,tif,tiff,webp}

CIFAR-100 is not read through `torchvision.datasets.CIFAR100`: its constructor md5-checks the train AND test
pickles and the meta file against the official release (there is no switch to turn that off), so any other
file, a test fixture included, is refused as "not found or corrupted". `cifar100()` reads the same pickles itself
into a `Cifar100Pickles` dataset with torchvision's attributes (`data` HWC uint8, `targets`, `classes`,
`class_to_idx`, PIL images out); `verify_md5=True` checks the files against the md5s torchvision publishes.
"""

from __future__ import annotations

import pickle
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import scipy.io as sio
import torch
from PIL import Image
from torchvision import datasets, transforms
from torchvision.datasets.utils import check_integrity

DATASETS = ("cifar100", "stanford_cars", "imagefolder")

CIFAR100_LAYOUT = """<root>/cifar-100-python/
    train      (pickle: 'data' uint8 (N, 3072), 'fine_labels')
    test       (pickle: 'data' uint8 (N, 3072), 'fine_labels')
    meta       (pickle: 'fine_label_names')"""

STANFORD_CARS_LAYOUT = """<root>/stanford_cars/
    cars_train/*.jpg
    cars_test/*.jpg
    devkit/cars_meta.mat               (class_names)
    devkit/cars_train_annos.mat        (annotations: fname, class)
    cars_test_annos_withlabels.mat     (annotations: fname, class)"""

IMAGE_FOLDER_LAYOUT = """<root>/
    <class_a>/<image>.jpg|png|...
    <class_b>/<image>.jpg|png|..."""

Transform = Callable[[Any], Any]


class DatasetLayoutError(FileNotFoundError):
    """A dataset is missing or malformed; the message names the path, the problem and the expected layout."""


def _layout_error(dataset: str, path: Path, problem: str, layout: str) -> DatasetLayoutError:
    return DatasetLayoutError(
        f"{dataset}: {problem}: {path}\nExpected layout:\n{layout}\nSee data/README.md for where to get the data."
    )


def to_tensor_resized(size: int | tuple[int, int]) -> transforms.Compose:
    """Resize a PIL image to `size` (an int gives a square) and convert it to a float tensor in [0, 1], CHW."""
    hw = (size, size) if isinstance(size, int) else tuple(size)
    return transforms.Compose([transforms.Resize(hw), transforms.ToTensor()])


class Cifar100Pickles(torch.utils.data.Dataset):
    """CIFAR-100 held in memory, with the same attributes and items as `torchvision.datasets.CIFAR100`."""

    def __init__(self, data: np.ndarray, targets: list[int], classes: list[str], transform: Transform | None):
        self.data = data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)  # HWC, as torchvision stores it
        self.targets = targets
        self.classes = classes
        self.class_to_idx = {name: i for i, name in enumerate(classes)}
        self.transform = transform

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, index: int) -> tuple[Any, int]:
        image = Image.fromarray(self.data[index])
        return (image if self.transform is None else self.transform(image)), self.targets[index]


# The only globals a CIFAR pickle needs: numpy's array and dtype reconstructors (numpy 1 and 2 module names) and the
# str → bytes codec protocol 2 uses for bytes. Everything else (lists, dicts, strings, numbers) needs none. A pickle
# naming any other global is refused before it is called, so a crafted file cannot run code.
_PICKLE_GLOBALS = {
    (module, name)
    for prefix in ("numpy.core", "numpy._core")
    for module, name in ((f"{prefix}.multiarray", "_reconstruct"), (f"{prefix}.numeric", "_frombuffer"))
} | {("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode")}  # protocol 2 writes bytes via _codecs


class _DataUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        if (module, name) not in _PICKLE_GLOBALS:
            raise pickle.UnpicklingError(
                f"it names {module}.{name}, which a data file has no use for (only numpy arrays, lists, strings and "
                "numbers are read; nothing in a data file is ever called)"
            )
        if module.startswith("numpy.core"):  # numpy 2 keeps the old name as a shim; read the real one
            module = module.replace("numpy.core", "numpy._core" if hasattr(np, "_core") else "numpy.core", 1)
        return super().find_class(module, name)


def _load_pickle(path: Path) -> dict[str, Any]:
    """A CIFAR pickle as a dict with str keys (the release has str keys under latin1; bytes keys are accepted), read
    by an unpickler that admits only numpy arrays and plain values."""
    if not path.is_file():
        raise _layout_error("CIFAR-100", path, "file not found", CIFAR100_LAYOUT)
    try:
        with path.open("rb") as f:
            entry = _DataUnpickler(f, encoding="latin1").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, ImportError) as err:
        raise _layout_error("CIFAR-100", path, f"not a readable pickle ({err})", CIFAR100_LAYOUT) from err
    if not isinstance(entry, dict):
        raise _layout_error("CIFAR-100", path, f"pickle holds a {type(entry).__name__}, not a dict", CIFAR100_LAYOUT)
    return {(k.decode("latin1") if isinstance(k, bytes) else k): v for k, v in entry.items()}


def _cifar_split(path: Path, n_classes: int) -> tuple[np.ndarray, list[int]]:
    """`data` (N, 3072) uint8 and `fine_labels` (N ints in [0, n_classes)) from one split pickle, checked."""
    entry = _load_pickle(path)
    missing = [key for key in ("data", "fine_labels") if key not in entry]
    if missing:
        raise _layout_error("CIFAR-100", path, f"pickle lacks key(s) {missing}", CIFAR100_LAYOUT)
    data, labels = np.asarray(entry["data"]), np.asarray(entry["fine_labels"]).tolist()
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        problem = f"'data' is {data.dtype} {data.shape}, expected uint8 (N, 3072)"
        raise _layout_error("CIFAR-100", path, problem, CIFAR100_LAYOUT)
    if not isinstance(labels, list) or len(labels) != len(data) or any(y not in range(n_classes) for y in labels):
        problem = f"'fine_labels' must be {len(data)} ints in [0, {n_classes}), one per image"
        raise _layout_error("CIFAR-100", path, problem, CIFAR100_LAYOUT)
    return data, labels


def _verify_cifar_md5(folder: Path, train: bool) -> None:
    """Compare the split and meta files with the md5s of the official release, as torchvision publishes them."""
    split_files = datasets.CIFAR100.train_list if train else datasets.CIFAR100.test_list
    for name, md5 in [*split_files, [datasets.CIFAR100.meta["filename"], datasets.CIFAR100.meta["md5"]]]:
        if not check_integrity(folder / name, md5):
            problem = f"md5 differs from the official release ({md5})"
            raise _layout_error("CIFAR-100", folder / name, problem, CIFAR100_LAYOUT)


def cifar100(
    root: str | Path, train: bool, transform: Transform | None = None, verify_md5: bool = False
) -> Cifar100Pickles:
    """CIFAR-100 (python pickle release) from `<root>/cifar-100-python/`; items are (PIL image or transformed, int)."""
    folder = Path(root) / "cifar-100-python"
    if not folder.is_dir():
        raise _layout_error("CIFAR-100", folder, "folder not found", CIFAR100_LAYOUT)
    meta_path = folder / "meta"
    meta = _load_pickle(meta_path)
    classes = meta.get("fine_label_names")
    if not isinstance(classes, list) or not classes or not all(isinstance(c, str) for c in classes):
        raise _layout_error("CIFAR-100", meta_path, "'fine_label_names' missing or not a list of str", CIFAR100_LAYOUT)
    data, labels = _cifar_split(folder / ("train" if train else "test"), len(classes))
    if verify_md5:
        _verify_cifar_md5(folder, train)
    return Cifar100Pickles(data, labels, classes, transform)


def _check_cars_annotations(path: Path, images: Path, n_classes: int) -> None:
    """Check `annotations` (fields fname, class 1-based) and the images, which torchvision only opens lazily."""
    try:
        samples = [(str(a["fname"]), int(a["class"])) for a in sio.loadmat(path, squeeze_me=True)["annotations"]]
    except (KeyError, ValueError, TypeError, IndexError) as err:
        problem = f"expected an 'annotations' struct array (2+ entries) with fields fname, class ({err!r})"
        raise _layout_error("Stanford Cars", path, problem, STANFORD_CARS_LAYOUT) from err
    for fname, label in samples:
        if not 1 <= label <= n_classes:
            problem = f"class {label} of {fname} is outside 1..{n_classes}"
            raise _layout_error("Stanford Cars", path, problem, STANFORD_CARS_LAYOUT)
        if not (images / fname).is_file():
            raise _layout_error(
                "Stanford Cars", images / fname, f"image listed in {path.name} not found", STANFORD_CARS_LAYOUT
            )


def _cars_class_count(meta_path: Path) -> int:
    """The number of names in `class_names` of devkit/cars_meta.mat (a cell array, as torchvision reads it)."""
    try:
        names = sio.loadmat(meta_path, squeeze_me=True)["class_names"]
    except (KeyError, ValueError, TypeError) as err:
        names = repr(err)
    if not isinstance(names, np.ndarray) or names.ndim != 1:
        problem = f"expected a 'class_names' cell array of 2+ names, got {names!r:.80}"
        raise _layout_error("Stanford Cars", meta_path, problem, STANFORD_CARS_LAYOUT)
    return len(names)


def stanford_cars(root: str | Path, split: str, transform: Transform | None = None) -> datasets.StanfordCars:
    """`torchvision.datasets.StanfordCars` on `<root>/stanford_cars/`; split is "train" or "test"; labels 0-based."""
    if split not in ("train", "test"):
        raise ValueError(f"Stanford Cars split must be 'train' or 'test', not {split!r}")
    base = Path(root) / "stanford_cars"
    annos = base / "devkit" / "cars_train_annos.mat" if split == "train" else base / "cars_test_annos_withlabels.mat"
    images, meta = base / f"cars_{split}", base / "devkit" / "cars_meta.mat"
    for path, is_dir in [(base, True), (base / "devkit", True), (meta, False), (annos, False), (images, True)]:
        if not (path.is_dir() if is_dir else path.is_file()):
            kind = "folder" if is_dir else "file"
            raise _layout_error("Stanford Cars", path, f"{kind} not found", STANFORD_CARS_LAYOUT)
    _check_cars_annotations(annos, images, _cars_class_count(meta))
    return datasets.StanfordCars(str(root), split=split, transform=transform, download=False)


def image_folder(root: str | Path, transform: Transform | None = None) -> datasets.ImageFolder:
    """`torchvision.datasets.ImageFolder` on `root/<class>/<image>`; classes are the sorted subfolder names."""
    folder = Path(root)
    if not folder.is_dir():
        raise _layout_error("ImageFolder", folder, "folder not found", IMAGE_FOLDER_LAYOUT)
    if not any(child.is_dir() for child in folder.iterdir()):
        raise _layout_error("ImageFolder", folder, "no class subfolders", IMAGE_FOLDER_LAYOUT)
    try:
        return datasets.ImageFolder(str(folder), transform=transform)
    except FileNotFoundError as err:  # torchvision: a class folder holds no image with a known extension
        raise _layout_error("ImageFolder", folder, str(err).strip(), IMAGE_FOLDER_LAYOUT) from err


def open_dataset(
    name: str, root: str | Path = "data", split: str | None = "train", transform: Transform | None = None
) -> torch.utils.data.Dataset:
    """Open a dataset by name: "cifar100" and "stanford_cars" take split "train"/"test" under `root`;
    "imagefolder" reads `<root>/<split>/` (a split folder or a DomainNet domain), or `root` itself if split is None."""
    if name == "cifar100":
        if split not in ("train", "test"):
            raise ValueError(f"CIFAR-100 split must be 'train' or 'test', not {split!r}")
        return cifar100(root, train=split == "train", transform=transform)
    if name == "stanford_cars":
        return stanford_cars(root, split=str(split), transform=transform)
    if name == "imagefolder":
        return image_folder(Path(root) / split if split else Path(root), transform=transform)
    raise ValueError(f"unknown dataset {name!r}; accepted names: {', '.join(DATASETS)}")
