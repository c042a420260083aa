"""BlockTrainer's offline preparation in the cloud (docs/blocktrainer.md#offline-preparation-in-the-cloud):

1. the foundation model ("fm"): a cloud-pretrained ViT, LoRA fine-tuned on the labelled source data through `peft`
   (Q, K and V only — timm's fused `qkv` linear — rank = out_features / 8 and no α scaling, as the original) and
   merged;
2. the knowledge base ("kb"): a compressed copy (heads and MLP units kept by L1 norm, Q/K/V and proj factorized)
   retrained by distillation from the fm, then trained jointly with its input-dependent FBS gates under the
   sandwich sparsity schedule;
3. the neuron index: each kb neuron as a weighted sum of fm neurons, solved in closed form.

Every stage is cached under runs/cache and resumes from its checkpoints.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from peft import LoraConfig, get_peft_model
from safetensors.torch import load_file, save_file
from timm.models.vision_transformer import VisionTransformer

from edgetune.data.scenes import CLEAR, SceneSpec, render_scenes
from edgetune.models import image_size, open_vit
from edgetune.retrain.config import KB, LORA, PRETRAIN, RetrainingConfig
from edgetune.retrain.data import Stream
from edgetune.retrain.kb import NeuronIndex, build_knowledge_base, set_sparsity
from edgetune.retrain.train import train_classifier
from edgetune.runs import RunResult, atomic_write, load_weights, save_weights
from edgetune.training import accuracy, derive_seed, seeded_rng


@dataclass
class Offline:
    fm: VisionTransformer
    kb: VisionTransformer
    index: NeuronIndex
    results: dict[str, RunResult]


def prepare(cfg: RetrainingConfig, stream: Stream, device: torch.device, force: bool = False) -> Offline:
    fm, pre = pretrained(cfg, stream, device, force)
    fm, lora = lora_finetuned(cfg, fm, stream, device, force)
    kb, index, kb_result = knowledge_base(cfg, fm, stream, device, force)
    return Offline(fm, kb, index, {"pretrain": pre, "lora": lora, "knowledge_base": kb_result})


def pretrained(cfg: RetrainingConfig, stream: Stream, device, force: bool = False):
    """The "cloud" model: trained on clear scenes (its own render seed); in the paper profile the checkpoint under
    model/ is the cloud model and `pretrain_steps` (0 there) would continue it on the source data."""

    def compute(cfg, folder: Path) -> RunResult:  # cfg: the stage's own fields
        model = open_vit(cfg.model, cfg.num_classes, seed=cfg.seed)
        data = stream.source
        if cfg.data == "scenes":
            spec = SceneSpec(cfg.num_classes, image_size(cfg.model))
            data = render_scenes(spec, CLEAR, cfg.train_size, seed=derive_seed(cfg.seed, "pretrain"))
        result = train_classifier(
            model,
            data,
            steps=cfg.pretrain_steps,
            batch_size=cfg.batch_size,
            lr=cfg.pretrain_lr,
            seed=cfg.seed,
            device=device,
            folder=folder,
            stage="retraining-pretrain",
        )
        save_weights(model, folder / "model.safetensors")
        result.artifacts["weights"] = "model.safetensors"
        return result

    result, folder = PRETRAIN.run(cfg, compute, force=force)
    fm = open_vit(cfg.model, cfg.num_classes, seed=cfg.seed)
    return load_weights(fm, folder / "model.safetensors").to(device), result


def lora_config(fm: VisionTransformer, divisor: int) -> LoraConfig:
    """BlockTrainer's LoRA: Q, K, V of every block (timm fuses them in `qkv`), rank = out_features / divisor,
    scaling 1 (alpha = r), the classifier head trained in full."""
    out = fm.blocks[0].attn.qkv.out_features // 3  # per projection, as the original's separate q/k/v linears
    r = max(1, out // divisor)
    return LoraConfig(r=r, lora_alpha=r, target_modules=["qkv"], lora_dropout=0.0, modules_to_save=["head"])


def lora_finetuned(cfg: RetrainingConfig, fm, stream: Stream, device, force: bool = False):
    """The fm: LoRA fine-tuned on the labelled source data and merged back into a plain timm ViT."""

    def compute(cfg, folder: Path) -> RunResult:  # cfg: the stage's own fields
        with seeded_rng(cfg.seed):
            model = get_peft_model(fm, lora_config(fm, cfg.lora_divisor))
        result = train_classifier(
            model,
            stream.source,
            steps=cfg.lora_steps,
            batch_size=cfg.batch_size,
            lr=cfg.lora_lr,
            seed=cfg.seed,
            device=device,
            folder=folder,
            stage="retraining-lora",
        )
        merged = model.merge_and_unload()
        result.metrics["source_accuracy"] = accuracy(merged, stream.source_test, device)[0]
        save_weights(merged, folder / "model.safetensors")
        result.artifacts["weights"] = "model.safetensors"
        return result

    result, folder = LORA.run(cfg, compute, force=force)
    fm = open_vit(cfg.model, cfg.num_classes, seed=cfg.seed)
    return load_weights(fm, folder / "model.safetensors").to(device), result


def knowledge_base(cfg: RetrainingConfig, fm, stream: Stream, device, force: bool = False):
    """The kb (distilled, then gate-trained) and the neuron index; accuracies at sparsity 0, cfg.sparsity and max."""

    def compute(cfg, folder: Path) -> RunResult:  # cfg: the stage's own fields
        with seeded_rng(cfg.seed):  # the gates' initialization
            kb = build_knowledge_base(fm, cfg.head_keep, cfg.mlp_keep).to(device)
        common = dict(
            batch_size=cfg.batch_size,
            lr=cfg.kb_lr,
            seed=cfg.seed,
            device=device,
            teacher=fm,
            kd_weight=cfg.kd_weight,
        )
        distill = train_classifier(
            kb, stream.source, steps=cfg.kb_steps, folder=folder / "distill", stage="retraining-kb-distill", **common
        )
        gates = train_classifier(
            kb,
            stream.source,
            steps=cfg.gate_steps,
            folder=folder / "gates",
            stage="retraining-kb-gates",
            max_sparsity=cfg.max_sparsity,
            gate_weight=cfg.gate_l1,
            **common,
        )
        index = NeuronIndex.fit(kb, fm, ridge=cfg.index_ridge)
        save_weights(kb, folder / "kb.safetensors")
        state = {k: v.contiguous() for k, v in index.state_dict().items()}
        atomic_write(folder / "index.safetensors", lambda tmp: save_file(state, str(tmp)))
        gates.history = distill.history + [{**row, "step": row["step"] + cfg.kb_steps} for row in gates.history]
        gates.wall_time_s = (distill.wall_time_s or 0) + (gates.wall_time_s or 0)
        gates.metrics.update(_kb_metrics(kb, fm, index, stream, cfg, device))
        gates.artifacts.update(weights="kb.safetensors", index="index.safetensors")
        return gates

    result, folder = KB.run(cfg, compute, force=force)
    kb = load_weights(build_knowledge_base(fm, cfg.head_keep, cfg.mlp_keep).to(device), folder / "kb.safetensors")
    index = NeuronIndex.from_state_dict(load_file(str(folder / "index.safetensors"), device=str(device)), kb, fm)
    return kb, index, result


def _kb_metrics(kb, fm, index, stream: Stream, cfg: RetrainingConfig, device) -> dict[str, float]:
    out = {"fm_source_accuracy": accuracy(fm, stream.source_test, device)[0]}
    for name, s in (
        ("kb_accuracy_dense", 0.0),
        ("kb_accuracy_sparse", cfg.sparsity),
        ("kb_accuracy_max_sparsity", cfg.max_sparsity),
    ):
        set_sparsity(kb, s)
        out[name] = accuracy(kb, stream.source_test, device)[0]
    set_sparsity(kb, 0.0)
    residuals = index.residual(kb, fm)
    out["index_residual_mean"] = float(sum(residuals.values()) / max(1, len(residuals)))
    out["kb_params"] = float(sum(p.numel() for n, p in kb.named_parameters() if ".gate." not in n))
    out["fm_params"] = float(sum(p.numel() for p in fm.parameters()))
    return out
