"""Load a Vision Transformer checkpoint (Hugging Face or timm) as a timm `VisionTransformer`.

Two on-disk layouts are understood by `load_vit`:

* **Hugging Face folder**, as google/vit-base-patch16-224 on the Hub: `config.json` (`model_type: "vit"`) next to
  `model.safetensors` or `pytorch_model.bin` (or their sharded `*.index.json` variants), optionally
  `preprocessor_config.json`. Both `ViTForImageClassification` (keys `vit.*` + `classifier.*`) and bare `ViTModel`
  (keys without the `vit.` prefix, maybe with a `pooler.*` that is dropped) checkpoints load. Key names of the
  original format (`encoder.layer.N.attention.attention.query`, as on the Hub and as transformers writes them) and of
  transformers>=5's in-memory modules (`layers.N.attention.q_proj`, `layers.N.mlp.fc1`) are both accepted.
* **timm checkpoint**: a state-dict file `<name>.safetensors` (or `.pth` / `.pt` / `.bin`, read with
  `torch.load(weights_only=True)`) with an optional sidecar `<name>.json` next to it (same stem), or a folder holding
  `timm_config.json` + `model.safetensors` (or `pytorch_model.bin` / `model.pth`). The JSON holds the keyword
  arguments of `timm.models.vision_transformer.VisionTransformer`, plus two keys of ours: `norm_eps` (the LayerNorm
  eps, turned into `norm_layer=partial(nn.LayerNorm, eps=norm_eps)`) and `pretrained_cfg` (timm's data config:
  input_size, mean, std, ...). `save_timm_checkpoint` writes this layout. Without a sidecar the architecture is
  inferred from the weight shapes, assuming 64-dim heads and eps 1e-6 (with a warning).

The loaded model is put in eval mode and gets a `pretrained_cfg` so that `timm.data.resolve_model_data_config(model)`
gives the checkpoint's preprocessing (Hugging Face ViTs normalise with mean = std = 0.5, not ImageNet statistics).
"""

from __future__ import annotations

import functools
import json
import math
import pickle
import re
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from timm.models.vision_transformer import VisionTransformer
from torch import nn

from edgetune.models.vit import exact_mlp

__all__ = [
    "hf_to_timm_state_dict",
    "load_vit",
    "save_timm_checkpoint",
    "vit_from_kwargs",
    "vit_kwargs_from_hf_config",
    "vit_kwargs_from_model",
]

HF_CONFIG = "config.json"
HF_PREPROCESSOR = "preprocessor_config.json"
HF_WEIGHTS = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin", "pytorch_model.bin.index.json")
TIMM_CONFIG = "timm_config.json"
TIMM_WEIGHTS = ("model.safetensors", "pytorch_model.bin", "model.pth")
TIMM_SUFFIXES = (".safetensors", ".pth", ".pt", ".bin")

HF_LAYOUT = (
    "a Hugging Face ViT folder like google/vit-base-patch16-224: config.json (model_type 'vit') + model.safetensors "
    "or pytorch_model.bin"
)
TIMM_LAYOUT = (
    f"a timm checkpoint: <name>{{{','.join(TIMM_SUFFIXES)}}} with optional sidecar <name>.json, or a folder with "
    f"{TIMM_CONFIG} + one of {', '.join(TIMM_WEIGHTS)}"
)

# Hugging Face ViT defaults (transformers.ViTConfig), used when an older config.json leaves a field out.
_HF_DEFAULTS: dict[str, Any] = {
    "image_size": 224,
    "patch_size": 16,
    "num_channels": 3,
    "hidden_size": 768,
    "num_hidden_layers": 12,
    "num_attention_heads": 12,
    "intermediate_size": 3072,
    "hidden_act": "gelu",
    "layer_norm_eps": 1e-12,
    "qkv_bias": True,
    "hidden_dropout_prob": 0.0,
    "attention_probs_dropout_prob": 0.0,
}

# Non-layer Hugging Face keys (after removing the `vit.` prefix) -> timm keys.
_HF_GLOBAL_KEYS = {
    "embeddings.cls_token": "cls_token",
    "embeddings.position_embeddings": "pos_embed",
    "embeddings.patch_embeddings.projection.weight": "patch_embed.proj.weight",
    "embeddings.patch_embeddings.projection.bias": "patch_embed.proj.bias",
    "layernorm.weight": "norm.weight",
    "layernorm.bias": "norm.bias",
    "classifier.weight": "head.weight",
    "classifier.bias": "head.bias",
}
# Per-layer Hugging Face module names -> timm block module names; "q"/"k"/"v" are concatenated into `attn.qkv`.
_HF_LAYER_MODULES = {
    "attention.attention.query": "q",  # original / Hub format
    "attention.attention.key": "k",
    "attention.attention.value": "v",
    "attention.output.dense": "attn.proj",
    "intermediate.dense": "mlp.fc1",
    "output.dense": "mlp.fc2",
    "attention.q_proj": "q",  # transformers>=5 module names
    "attention.k_proj": "k",
    "attention.v_proj": "v",
    "attention.o_proj": "attn.proj",
    "mlp.fc1": "mlp.fc1",
    "mlp.fc2": "mlp.fc2",
    "layernorm_before": "norm1",
    "layernorm_after": "norm2",
}
_HF_LAYER_KEY = re.compile(r"^(?:encoder\.layer|layers)\.(\d+)\.(.+)\.(weight|bias)$")
_HF_DROPPED_PREFIXES = ("pooler.",)


# --------------------------------------------------------------------------------------------------- public API


def load_vit(
    path: str | Path,
    num_classes: int | None = None,
    device: torch.device | str | None = None,
    dtype: torch.dtype | str | None = None,
) -> VisionTransformer:
    """Load a Hugging Face or timm ViT checkpoint as a timm `VisionTransformer`, in eval mode.

    Args:
        path: a Hugging Face ViT folder, a timm checkpoint file, or a timm checkpoint folder (see the module docs).
        num_classes: classifier size. None keeps the checkpoint's head (none for a bare `ViTModel`); a different
            value replaces it by a freshly initialised `nn.Linear` (0 = no head, the model returns pooled features).
        device: where to move the model (e.g. "cuda"); None leaves it on the CPU.
        dtype: parameter dtype (torch.float16, "bfloat16", ...); None keeps float32 (whatever the stored dtype).

    Raises:
        FileNotFoundError: the path, its config.json or its weights do not exist.
        ValueError: the config is not a ViT, the activation is not gelu, or weights and architecture disagree
            (unknown, missing or wrongly shaped keys are named).
    """
    path = Path(path).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"ViT checkpoint not found: {path}; expected {HF_LAYOUT}, or {TIMM_LAYOUT}")
    if path.is_dir() and (path / HF_CONFIG).is_file():
        model = _load_hf_folder(path)
    elif path.is_dir() and (path / TIMM_CONFIG).is_file():
        model = _load_timm_folder(path)
    elif path.is_dir():
        raise FileNotFoundError(
            f"{path} has no {HF_CONFIG} (nor {TIMM_CONFIG}); expected {HF_LAYOUT}, or {TIMM_LAYOUT}"
        )
    else:
        model = _load_timm_file(path)
    _set_num_classes(model, num_classes)
    return model.to(device=device, dtype=_resolve_dtype(dtype)).eval()


def hf_to_timm_state_dict(hf_state: Mapping[str, torch.Tensor], config: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    """Rename a Hugging Face ViT state dict to timm `VisionTransformer` names (a pure function).

    Accepts `ViTForImageClassification` and `ViTModel` state dicts, with or without the `vit.` prefix, in the
    original (Hub) or the transformers>=5 key naming. Query/key/value of each layer are concatenated into
    `blocks.N.attn.qkv`; `pooler.*` is dropped; `classifier.*` becomes `head.*` (optional).

    Raises:
        ValueError: naming every key that cannot be mapped, is duplicated, or is missing for `config`
            (`num_hidden_layers`, `qkv_bias`).
    """
    out: dict[str, torch.Tensor] = {}
    qkv_parts: dict[tuple[int, str], dict[str, torch.Tensor]] = {}
    unmapped, duplicated = [], []
    for key, tensor in hf_state.items():
        target = _map_hf_key(key.removeprefix("vit."))
        if target is None:
            unmapped.append(key)
        elif target == "":
            continue  # dropped (pooler)
        elif isinstance(target, tuple):
            block, part, kind = target
            parts = qkv_parts.setdefault((block, kind), {})
            duplicated += [key] if part in parts else []
            parts[part] = tensor
        else:
            duplicated += [key] if target in out else []
            out[target] = tensor
    if unmapped:
        raise ValueError(
            f"unmapped keys in the Hugging Face ViT state dict: {sorted(unmapped)}; expected only embeddings.*, "
            "encoder.layer.N.* (or layers.N.*), layernorm.*, classifier.* and pooler.*, optionally prefixed by 'vit.'"
        )
    if duplicated:
        raise ValueError(f"keys mapped twice (both naming schemes present?): {sorted(duplicated)}")
    out.update(_concat_qkv(qkv_parts))
    _check_expected_keys(out, config)
    return out


def vit_kwargs_from_hf_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """timm `VisionTransformer` kwargs (JSON-serialisable, with `norm_eps`) for a Hugging Face ViT config.json.

    `num_classes` is the number of entries of `id2label`; `load_vit` sets it to 0 when the checkpoint has no
    classifier. Dropouts map approximately (timm's Mlp also drops after the activation); they are 0 in Google's ViTs.
    """
    cfg = {**_HF_DEFAULTS, **config}
    if cfg["hidden_act"] != "gelu":
        raise ValueError(f"hidden_act must be 'gelu' (exact GELU, as timm's ViT uses), got {cfg['hidden_act']!r}")
    dim, heads, hidden = cfg["hidden_size"], cfg["num_attention_heads"], cfg["intermediate_size"]
    if dim % heads or cfg.get("head_dim", dim // heads) != dim // heads:
        raise ValueError(f"hidden_size {dim} must be num_attention_heads {heads} x head_dim for a timm ViT")
    return {
        "img_size": list(_pair(cfg["image_size"])),
        "patch_size": list(_pair(cfg["patch_size"])),
        "in_chans": cfg["num_channels"],
        "num_classes": len(cfg.get("id2label") or {}),
        "global_pool": "token",
        "class_token": True,
        "embed_dim": dim,
        "depth": cfg["num_hidden_layers"],
        "num_heads": heads,
        "mlp_ratio": hidden / dim,
        "mlp_hidden": hidden,
        "qkv_bias": bool(cfg["qkv_bias"]),
        "norm_eps": float(cfg["layer_norm_eps"]),
        "pos_drop_rate": cfg["hidden_dropout_prob"],
        "proj_drop_rate": cfg["hidden_dropout_prob"],
        "attn_drop_rate": cfg["attention_probs_dropout_prob"],
    }


def vit_kwargs_from_model(model: VisionTransformer) -> dict[str, Any]:
    """JSON-serialisable kwargs rebuilding a standard (class-token, LayerNorm) timm ViT; strict loading checks it."""
    block = model.blocks[0]
    return {
        "img_size": list(model.patch_embed.img_size),
        "patch_size": list(model.patch_embed.patch_size),
        "in_chans": model.patch_embed.proj.in_channels,
        "num_classes": model.num_classes,
        "global_pool": model.global_pool,
        "class_token": model.cls_token is not None,
        "embed_dim": model.embed_dim,
        "depth": len(model.blocks),
        "num_heads": block.attn.num_heads,
        "mlp_ratio": block.mlp.fc1.out_features / model.embed_dim,
        "mlp_hidden": block.mlp.fc1.out_features,
        "qkv_bias": block.attn.qkv.bias is not None,
        "norm_eps": float(block.norm1.eps),
    }


def vit_from_kwargs(kwargs: Mapping[str, Any]) -> VisionTransformer:
    """Construct a timm `VisionTransformer` from JSON kwargs (`norm_eps` becomes a LayerNorm `norm_layer`; `mlp_hidden`,
    when given, is the exact MLP width, which `mlp_ratio` alone can round one unit short)."""
    kwargs = {k: tuple(v) if isinstance(v, list) else v for k, v in kwargs.items() if k != "pretrained_cfg"}
    if "norm_eps" in kwargs:
        kwargs["norm_layer"] = functools.partial(nn.LayerNorm, eps=kwargs.pop("norm_eps"))
    hidden = kwargs.pop("mlp_hidden", None)
    model = VisionTransformer(**kwargs)
    return model if hidden is None else exact_mlp(model, int(hidden), drop=kwargs.get("proj_drop_rate", 0.0))


def save_timm_checkpoint(
    model: VisionTransformer, path: str | Path, kwargs: Mapping[str, Any] | None = None
) -> tuple[Path, Path]:
    """Write `model` as `<path>` (.safetensors) + sidecar `<stem>.json`, the timm layout `load_vit` reads.

    `kwargs` defaults to `vit_kwargs_from_model(model)`; the model's `pretrained_cfg` (if any) is stored alongside.
    Returns (weights file, sidecar file).
    """
    path = Path(path)
    if path.suffix != ".safetensors":
        raise ValueError(f"save_timm_checkpoint writes safetensors; give a path ending in .safetensors, got {path}")
    sidecar = path.with_suffix(".json")
    config = dict(kwargs if kwargs is not None else vit_kwargs_from_model(model))
    if isinstance(getattr(model, "pretrained_cfg", None), Mapping):
        config["pretrained_cfg"] = dict(model.pretrained_cfg)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}, str(path))
    sidecar.write_text(json.dumps(config, indent=2) + "\n")
    return path, sidecar


# --------------------------------------------------------------------------------------------- Hugging Face


def _load_hf_folder(folder: Path) -> VisionTransformer:
    """Build and strictly load a timm ViT from a Hugging Face ViT folder."""
    config = _read_json(folder / HF_CONFIG)
    if config.get("model_type") != "vit":
        raise ValueError(
            f"{folder / HF_CONFIG} has model_type {config.get('model_type')!r}, not 'vit'; expected {HF_LAYOUT}"
        )
    state = hf_to_timm_state_dict(_read_hf_weights(folder), config)
    kwargs = vit_kwargs_from_hf_config(config)
    if "head.weight" not in state:
        kwargs["num_classes"] = 0
    model = _strict_load(vit_from_kwargs(kwargs), state, folder)
    model.pretrained_cfg = _hf_pretrained_cfg(folder, kwargs)
    return model


def _read_hf_weights(folder: Path) -> dict[str, torch.Tensor]:
    """Read the first weights file of `HF_WEIGHTS` present in `folder` (sharded index files included)."""
    for name in HF_WEIGHTS:
        file = folder / name
        if file.is_file():
            if name.endswith(".index.json"):
                shards = sorted(set(_read_json(file)["weight_map"].values()))
                return {k: v for shard in shards for k, v in _read_state_dict(folder / shard).items()}
            return _read_state_dict(file)
    raise FileNotFoundError(f"{folder} has {HF_CONFIG} but no weights (one of {', '.join(HF_WEIGHTS)})")


def _map_hf_key(key: str) -> str | tuple[int, str, str] | None:
    """timm name for an (unprefixed) HF key; (block, q/k/v, weight/bias) for attention inputs; "" = drop; None."""
    if key in _HF_GLOBAL_KEYS:
        return _HF_GLOBAL_KEYS[key]
    if key.startswith(_HF_DROPPED_PREFIXES):
        return ""
    match = _HF_LAYER_KEY.match(key)
    module = _HF_LAYER_MODULES.get(match.group(2)) if match else None
    if module is None:
        return None
    block, kind = int(match.group(1)), match.group(3)
    return (block, module, kind) if module in ("q", "k", "v") else f"blocks.{block}.{module}.{kind}"


def _concat_qkv(parts: Mapping[tuple[int, str], Mapping[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Concatenate per-layer query/key/value tensors into timm's fused `blocks.N.attn.qkv.*`."""
    out = {}
    for (block, kind), qkv in sorted(parts.items()):
        missing = [p for p in ("q", "k", "v") if p not in qkv]
        if missing:
            names = {"q": "query", "k": "key", "v": "value"}
            keys = [f"encoder.layer.{block}.attention.attention.{names[p]}.{kind}" for p in missing]
            raise ValueError(f"missing keys in the Hugging Face ViT state dict: {keys}")
        out[f"blocks.{block}.attn.qkv.{kind}"] = torch.cat([qkv["q"], qkv["k"], qkv["v"]], dim=0)
    return out


def _check_expected_keys(state: Mapping[str, torch.Tensor], config: Mapping[str, Any]) -> None:
    """Raise naming the timm keys that `config` needs but `state` lacks, or that it has beyond them."""
    cfg = {**_HF_DEFAULTS, **config}
    expected = {
        "cls_token",
        "pos_embed",
        "patch_embed.proj.weight",
        "patch_embed.proj.bias",
        "norm.weight",
        "norm.bias",
    }
    per_block = ["norm1", "norm2", "attn.proj", "mlp.fc1", "mlp.fc2"]
    for i in range(cfg["num_hidden_layers"]):
        expected |= {f"blocks.{i}.{m}.{kind}" for m in per_block for kind in ("weight", "bias")}
        expected |= {f"blocks.{i}.attn.qkv.weight"} | ({f"blocks.{i}.attn.qkv.bias"} if cfg["qkv_bias"] else set())
    if "head.weight" in state or "head.bias" in state:
        expected |= {"head.weight", "head.bias"}
    missing, unexpected = sorted(expected - state.keys()), sorted(state.keys() - expected)
    if missing or unexpected:
        raise ValueError(
            f"Hugging Face ViT state dict does not match its config (num_hidden_layers={cfg['num_hidden_layers']}, "
            f"qkv_bias={cfg['qkv_bias']}): missing timm keys {missing}, unexpected timm keys {unexpected}"
        )


def _hf_pretrained_cfg(folder: Path, kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """timm data config from preprocessor_config.json (ViTImageProcessor defaults: squash-resize, bilinear, 0.5)."""
    pre = _read_json(folder / HF_PREPROCESSOR) if (folder / HF_PREPROCESSOR).is_file() else {}
    interpolation = {0: "nearest", 2: "bilinear", 3: "bicubic"}.get(pre.get("resample", 2), "bilinear")
    return {
        "input_size": (kwargs["in_chans"], *kwargs["img_size"]),
        "interpolation": interpolation,
        "mean": tuple(pre.get("image_mean", (0.5, 0.5, 0.5))),
        "std": tuple(pre.get("image_std", (0.5, 0.5, 0.5))),
        "crop_pct": 1.0,
        "crop_mode": "squash",
        "num_classes": kwargs["num_classes"],
    }


# ------------------------------------------------------------------------------------------------------ timm


def _load_timm_folder(folder: Path) -> VisionTransformer:
    """Load a folder holding timm_config.json + model.safetensors / pytorch_model.bin / model.pth."""
    weights = next((folder / n for n in TIMM_WEIGHTS if (folder / n).is_file()), None)
    if weights is None:
        raise FileNotFoundError(f"{folder} has {TIMM_CONFIG} but no weights (one of {', '.join(TIMM_WEIGHTS)})")
    return _load_timm(weights, folder / TIMM_CONFIG)


def _load_timm_file(file: Path) -> VisionTransformer:
    """Load a timm state-dict file with its optional `<stem>.json` sidecar."""
    if file.suffix not in TIMM_SUFFIXES:
        raise ValueError(f"{file} is not a checkpoint file; expected {HF_LAYOUT}, or {TIMM_LAYOUT}")
    sidecar = file.with_suffix(".json")
    return _load_timm(file, sidecar if sidecar.is_file() else None)


def _load_timm(weights: Path, sidecar: Path | None) -> VisionTransformer:
    """Build the ViT from the sidecar (or inferred from shapes) and strictly load `weights`."""
    state = _read_state_dict(weights)
    if any(k.startswith(("vit.", "embeddings.", "encoder.layer.")) for k in state):
        raise ValueError(f"{weights} holds Hugging Face ViT keys; pass its folder (with config.json): {HF_LAYOUT}")
    kwargs = _read_json(sidecar) if sidecar is not None else _infer_vit_kwargs(state, weights)
    try:
        model = vit_from_kwargs(kwargs)
    except TypeError as err:
        raise ValueError(f"{sidecar}: not valid timm VisionTransformer kwargs ({err})") from err
    model = _strict_load(model, state, weights)
    stored = kwargs.get("pretrained_cfg") or _timm_pretrained_cfg(kwargs)
    model.pretrained_cfg = {k: tuple(v) if isinstance(v, list) else v for k, v in stored.items()}  # JSON lists
    return model


def _infer_vit_kwargs(state: Mapping[str, torch.Tensor], file: Path) -> dict[str, Any]:
    """Guess kwargs of a standard class-token ViT from weight shapes (64-dim heads, eps 1e-6), with a warning."""
    try:
        embed_dim, in_chans, patch_h, patch_w = state["patch_embed.proj.weight"].shape
        grid = state["pos_embed"].shape[1] - 1
        mlp_hidden = state["blocks.0.mlp.fc1.weight"].shape[0]
        depth = 1 + max(int(k.split(".")[1]) for k in state if k.startswith("blocks."))
        side = math.isqrt(grid)
        if "cls_token" not in state or side * side != grid:
            raise KeyError("cls_token / square patch grid")
    except KeyError as err:
        raise ValueError(
            f"{file}: cannot infer a standard ViT from the weights (no {err}); write the sidecar "
            f"{file.with_suffix('.json').name} with the timm VisionTransformer kwargs (see save_timm_checkpoint)"
        ) from err
    num_heads = max(1, embed_dim // 64)
    warnings.warn(
        f"{file}: no sidecar {file.with_suffix('.json').name}; inferred the ViT from weight shapes, assuming "
        f"num_heads={num_heads} (64-dim heads) and LayerNorm eps 1e-6",
        stacklevel=3,
    )
    return {
        "img_size": [side * patch_h, side * patch_w],
        "patch_size": [patch_h, patch_w],
        "in_chans": in_chans,
        "num_classes": state["head.weight"].shape[0] if "head.weight" in state else 0,
        "embed_dim": embed_dim,
        "depth": depth,
        "num_heads": num_heads,
        "mlp_ratio": mlp_hidden / embed_dim,
        "mlp_hidden": mlp_hidden,
        "qkv_bias": "blocks.0.attn.qkv.bias" in state,
        "norm_eps": 1e-6,
    }


def _timm_pretrained_cfg(kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """Input size / class count for a timm checkpoint without a stored `pretrained_cfg` (timm's default stats)."""
    img = _pair(kwargs.get("img_size", 224))
    return {"input_size": (kwargs.get("in_chans", 3), *img), "num_classes": kwargs.get("num_classes", 1000)}


# ----------------------------------------------------------------------------------------------------- shared


def _read_json(file: Path) -> dict[str, Any]:
    """Parse a JSON file, naming it on failure."""
    try:
        return json.loads(file.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{file} is not valid JSON: {err}") from err


def _read_state_dict(file: Path) -> dict[str, torch.Tensor]:
    """Tensors of a .safetensors file or a torch state dict (`weights_only=True`; `model`/`state_dict` unwrapped)."""
    try:
        if file.suffix == ".safetensors":
            return load_file(str(file), device="cpu")
        state = torch.load(file, map_location="cpu", weights_only=True)
    except (SafetensorError, RuntimeError, EOFError, pickle.UnpicklingError, ValueError) as err:
        raise ValueError(
            f"{file} is not a readable weights file ({type(err).__name__}: {str(err)[:160]}); it may be truncated or "
            "damaged: copy it again from its source"
        ) from None
    for wrapper in ("state_dict", "model"):
        if isinstance(state, Mapping) and isinstance(state.get(wrapper), Mapping):
            state = state[wrapper]
    if not isinstance(state, Mapping):
        raise ValueError(f"{file} does not hold a state dict (got {type(state).__name__})")
    return {k.removeprefix("module."): v for k, v in state.items()}


def _strict_load(model: VisionTransformer, state: Mapping[str, torch.Tensor], source: Path) -> VisionTransformer:
    """`load_state_dict(strict=True)`, re-raised as ValueError naming the checkpoint."""
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as err:
        raise ValueError(f"weights in {source} do not fit the ViT built for them:\n{err}") from err
    return model


def _set_num_classes(model: VisionTransformer, num_classes: int | None) -> None:
    """Replace the head by a fresh one of `num_classes` outputs (0 = none) when it differs from the checkpoint's."""
    if num_classes is None or num_classes == model.num_classes:
        return
    if num_classes < 0:
        raise ValueError(f"num_classes must be >= 0 (0 = no head), got {num_classes}")
    model.reset_classifier(num_classes)
    if isinstance(getattr(model, "pretrained_cfg", None), dict):
        model.pretrained_cfg["num_classes"] = num_classes


def _resolve_dtype(dtype: torch.dtype | str | None) -> torch.dtype | None:
    """torch dtype from a dtype or its name ("bfloat16", "torch.float16"); floating types only."""
    if dtype is None or isinstance(dtype, torch.dtype):
        resolved = dtype
    else:
        resolved = getattr(torch, str(dtype).removeprefix("torch."), None)
    if resolved is not None and not (isinstance(resolved, torch.dtype) and resolved.is_floating_point):
        raise ValueError(f"dtype must be a floating torch dtype, got {dtype!r}")
    return resolved


def _pair(value: int | list[int] | tuple[int, ...]) -> tuple[int, int]:
    """(h, w) from an int or a 2-sequence (HF configs allow both)."""
    return (value, value) if isinstance(value, int) else (int(value[0]), int(value[1]))
