"""ACME's cloud tier as a linear chain of cached stages (docs/acme.md#cloud-elastic-supernet): fine-tune the
pretrained ViT on the cloud's data, rewire its heads and MLP units by importance and train every width (DynaViTw),
then every width × depth (DynaViT). Each stage reads only its own fields (`config.FINETUNE`, `DYNAVITW`,
`DYNAVIT`) and starts from the previous stage's weights; the loops are in `train.py`."""

from __future__ import annotations

import copy
from pathlib import Path

from timm.models.vision_transformer import VisionTransformer

from edgetune.customize.config import DYNAVIT, DYNAVITW, FINETUNE, CustomizeConfig
from edgetune.customize.supernet import WIDTHS, SubnetSpec, all_specs, reorder_by_importance
from edgetune.customize.train import importance_scores, train_elastic
from edgetune.data.sources import Source
from edgetune.models import open_vit
from edgetune.profiles import pick_device
from edgetune.runs import Meter, RunResult, load_weights, save_weights
from edgetune.runs.stages import Stage
from edgetune.training import finetune


def cloud_supernet(
    cfg: CustomizeConfig, source: Source, force: bool = False
) -> tuple[VisionTransformer, dict[str, RunResult]]:
    """Fine-tune → rewire by importance → DynaViTw (all widths) → DynaViT (all widths × depths), each stage cached.
    Returns the supernet and each stage's result."""
    device = pick_device(cfg.device)
    vit, finetune_result = finetuned(cfg, source, device, force)
    vit, dynavitw_result = elastic(cfg, DYNAVITW, vit, source, device, force)
    vit, dynavit_result = elastic(cfg, DYNAVIT, vit, source, device, force)
    results = {"acme-finetune": finetune_result, "acme-dynavitw": dynavitw_result, "acme-dynavit": dynavit_result}
    return vit.to(device), results


def finetuned(cfg: CustomizeConfig, source: Source, device, force: bool = False):
    """The pretrained ViT fine-tuned on the cloud's training data."""

    def compute(cfg, folder: Path) -> RunResult:  # cfg: the stage's own fields (FINETUNE.reads)
        vit = open_vit(cfg.model, cfg.num_classes, seed=cfg.seed)
        with Meter(device) as meter:
            losses = finetune(
                vit,
                source.train,
                steps=cfg.finetune_steps,
                batch_size=cfg.batch_size,
                lr=cfg.finetune_lr,
                seed=cfg.seed,
                device=device,
            )
        save_weights(vit, folder / "model.safetensors")
        history = [{"step": i + 1, "loss": v} for i, v in enumerate(losses)]
        return RunResult.measured("acme-finetune", {}, cfg.seed, vit, device, meter, history=history)

    result, folder = FINETUNE.run(cfg, compute, force=force)
    return load_weights(open_vit(cfg.model, cfg.num_classes, seed=cfg.seed), folder / "model.safetensors"), result


def elastic(cfg: CustomizeConfig, stage: Stage, start: VisionTransformer, source: Source, device, force: bool = False):
    """DynaViTw from the fine-tuned model (rewired by importance first; every width) or DynaViT from DynaViTw (every
    width × depth), each distilled from a frozen copy of the model it starts from."""
    widths = stage is DYNAVITW

    def compute(cfg, folder: Path) -> RunResult:  # cfg: the stage's own fields (DYNAVITW/DYNAVIT.reads)
        vit = start
        if widths:
            scores = importance_scores(
                vit,
                source.train,
                batches=cfg.importance_batches,
                batch_size=cfg.batch_size,
                seed=cfg.seed,
                device=device,
            )
            reorder_by_importance(vit, scores)
        specs = [SubnetSpec(w) for w in sorted(WIDTHS, reverse=True)] if widths else all_specs()
        result = train_elastic(
            vit,
            copy.deepcopy(vit),
            source.train,
            specs,
            steps=cfg.dynavitw_steps if widths else cfg.dynavit_steps,
            batch_size=cfg.batch_size,
            lr=cfg.elastic_lr,
            hidden_weight=cfg.hidden_weight,
            seed=cfg.seed,
            folder=folder,
            checkpoint_every=cfg.checkpoint_every,
            device=device,
            stage=stage.name,
        )
        save_weights(vit, folder / "model.safetensors")
        return result

    result, folder = stage.run(cfg, compute, force=force)
    return load_weights(open_vit(cfg.model, cfg.num_classes, seed=cfg.seed), folder / "model.safetensors"), result
