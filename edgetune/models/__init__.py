"""Models: timm ViT constructors for the profiles, width pruning, and loading real checkpoints."""

from edgetune.models.load import hf_to_timm_state_dict, load_vit
from edgetune.models.open import check_model, image_size, open_vit
from edgetune.models.vit import VIT_FAMILY, ViTShape, build_vit, forward_flops, prune_width, vit_shape

__all__ = [
    "VIT_FAMILY",
    "ViTShape",
    "build_vit",
    "forward_flops",
    "hf_to_timm_state_dict",
    "check_model",
    "image_size",
    "open_vit",
    "load_vit",
    "prune_width",
    "vit_shape",
]
