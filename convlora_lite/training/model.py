"""The model of a run: built from its config, or rebuilt from a finished run directory."""
from __future__ import annotations

import dataclasses

from torch import nn

from convlora_lite.models.activation_checkpointing import enable_activation_checkpointing
from convlora_lite.models.sam import build_sam
from convlora_lite.models.sdpa_attention import enable_sdpa_attention
from convlora_lite.models.segmenter_sam2 import segmenter_for
from convlora_lite.peft import apply_peft
from convlora_lite.peft.state import load_trainable
from convlora_lite.training.config import TrainConfig
from convlora_lite.training.rundir import RunDir


def build_segmenter(config: TrainConfig) -> nn.Module:
    """SAM as the run's segmenter, before PEFT: ``PromptFreeSAM(build_sam(model, checkpoint,
    image_size), num_classes, query_jitter)``, or ``PromptedSAM(..., prompt)`` for ``prompt`` box or point (with
    no PEFT method applied, the zero-shot promptable SAM); SAM 2.1's ``PromptFreeSAM2`` and ``PromptedSAM2`` for its
    models (:func:`~convlora_lite.models.segmenter_sam2.segmenter_for`)."""
    sam = build_sam(config.model, config.checkpoint, image_size=config.image_size)
    return segmenter_for(sam, num_classes=config.num_classes, prompt=config.prompt, query_jitter=config.query_jitter)


def build_model(config: TrainConfig) -> nn.Module:
    """:func:`build_segmenter` with the PEFT method applied, the encoder's attention as ``config.attention`` says
    (:mod:`convlora_lite.models.sdpa_attention`) and, if asked, activation checkpointing of the encoder blocks."""
    model = build_segmenter(config)
    apply_peft(model, config.method, **config.method_options)
    if config.attention == "sdpa":
        enable_sdpa_attention(model.image_encoder)
    if config.activation_checkpointing:
        enable_activation_checkpointing(model.image_encoder)
    return model


def load_run(run_dir) -> tuple[nn.Module, TrainConfig]:
    """``(model, config)`` of a finished run: the model rebuilt from ``config.json`` (frozen
    weights from ``config.checkpoint``, or from the seed for a random model) with the best
    trainable weights, in eval mode on the CPU. Used in notebooks 09, 10 and 12."""
    from accelerate.utils import set_seed

    run = RunDir(run_dir)
    config = TrainConfig.of_run(run.path)
    set_seed(config.seed)
    config = dataclasses.replace(config, activation_checkpointing=False)
    model = build_model(config)
    load_trainable(model, run.load_tensors(run.best), str(run.best))
    return model.eval(), config

