"""Data: the embedded edge-scenes generator, non-IID partitioners, and readers for real datasets under data/."""

from edgetune.data.partition import client_classes, dirichlet_split, label_group_split, label_histogram
from edgetune.data.readers import DatasetLayoutError, cifar100, image_folder, open_dataset, stanford_cars
from edgetune.data.scenes import CLEAR, Domain, SceneSpec, apply_domain, domain_stream, render_scenes

__all__ = [
    "CLEAR",
    "DatasetLayoutError",
    "Domain",
    "SceneSpec",
    "apply_domain",
    "cifar100",
    "client_classes",
    "dirichlet_split",
    "domain_stream",
    "image_folder",
    "label_group_split",
    "label_histogram",
    "open_dataset",
    "render_scenes",
    "stanford_cars",
]
