"""One file per trained model: ``convlora export``, and a LoRA model merged into a plain SAM checkpoint.

:func:`export_run` writes the best trainable tensors of a finished run and, in the safetensors
metadata, the resolved config, the dataset spec (task, classes, metrics) and the SAM base weights
*by reference*: the model name, the checkpoint as configured, its file name and sha256 (the base
weights are not copied; a random base is rebuilt from the run's seed). :func:`load_source` accepts
such a file or a run directory, so ``convlora predict`` and :class:`~convlora_lite.inference.Segmenter`
take either. :func:`export_hub` (``convlora export --format hub``) writes a folder in the Hugging Face
Hub's model layout: that file as ``model.safetensors``, the resolved config (without the machine's paths:
:func:`public_config`) and a model card
(``README.md``, :mod:`~convlora_lite.inference.model_card`); :func:`load_source` takes such a folder too.

:func:`merged_sam_state` folds a LoRA run's low-rank updates into the ``qkv`` weights
(``W + (alpha / r) B A``) and its trained decoder into SAM's own decoder, giving a state dict in
Meta's format that ``segment_anything``'s ``Sam`` (``sam_model_registry[...]``) loads as is; it
keeps SAM's prompt encoder and its other mask tokens, so the result is a promptable SAM whose
image encoder is the adapted one. It is at the run's ``image_size`` (its position tables
resized as for training); SAM's own builders (1024 px) load it for runs at 1024 px. Conv-LoRA
cannot be merged: its mixture of convolutional experts is non-linear (and input-dependent), so no
single weight matrix equals it.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch

from convlora_lite.errors import CheckpointError, ConfigError
from convlora_lite.io import atomic_folder, atomic_write
from convlora_lite.training.config import TrainConfig

FORMAT = "convlora_lite.export/1"
#: methods whose trained model is SAM's own architecture once merged.
MERGEABLE = ("lora", "decoder_only")
#: a Hub folder's export file and model card.
HUB_WEIGHTS, HUB_CARD = "model.safetensors", "README.md"


def sha256_of(path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def base_reference(config) -> dict:
    """The SAM base weights of ``config`` by name and checksum (no download, no copy)."""
    from convlora_lite.models.checkpoints import resolve_checkpoint
    from convlora_lite.models.sam import get_config

    cfg = get_config(config.model)
    reference = {"model": config.model, "checkpoint": config.checkpoint, "file": None, "sha256": None}
    if config.checkpoint is None or (config.checkpoint == "auto" and cfg.checkpoint_url is None
                                     and resolve_checkpoint(cfg, "auto") is None):
        reference["random_seed"] = config.seed
    elif config.checkpoint == "auto" and cfg.checkpoint_url is not None:
        reference.update(file=cfg.checkpoint_url.rsplit("/", 1)[-1], sha256=cfg.checkpoint_sha256)
    else:
        path = resolve_checkpoint(cfg, config.checkpoint)
        reference.update(file=path.name, sha256=sha256_of(path))
    return reference


def spec_summary(spec) -> dict:
    """What prediction and scoring need of a spec, as plain JSON."""
    return {"name": spec.name, "source": getattr(spec, "source", ""), "shape": getattr(spec, "shape", "registry"),
            "task": spec.task, "classes": list(spec.classes), "loss": spec.loss, "select_metric": spec.select_metric,
            "select_mode": spec.select_mode, "metrics": list(spec.metrics), "test_splits": list(spec.test_splits)}


def public_config(config: dict) -> dict:
    """A run's config dict without the paths of the machine it ran on (what a Hub folder publishes): no
    ``output_dir``, the default ``data_root``, and only the names of ``data_dir`` and of a checkpoint file
    (``auto`` and random weights are kept as they are)."""
    checkpoint = config.get("checkpoint")
    local = checkpoint not in (None, "auto")
    return {**config, "output_dir": None, "data_root": TrainConfig.data_root,
            "data_dir": Path(config["data_dir"]).name if config.get("data_dir") else None,
            "checkpoint": Path(checkpoint).name if local else checkpoint}


def export_run(run_dir, output, public: bool = False) -> Path:
    """Write the export of the finished run ``run_dir`` to ``output`` (``.safetensors``); returns it. ``public``:
    the config without local paths (:func:`public_config`). Used in notebook 11."""
    from safetensors.torch import save_file

    from convlora_lite.training.run_data import run_spec
    from convlora_lite.training.rundir import RunDir

    run = RunDir(run_dir)
    output = Path(output)
    if output.suffix != ".safetensors":
        raise ConfigError(f"--output {output}: an export is a .safetensors file; name it e.g. model.safetensors.")
    config = TrainConfig.of_run(run.path)
    tensors = run.load_tensors(run.best)
    config_dict = public_config(config.to_dict()) if public else config.to_dict()
    metadata = {"format": FORMAT, "config": json.dumps(config_dict),
                "spec": json.dumps(spec_summary(run_spec(run_dir))), "base": json.dumps(base_reference(config))}
    cpu = {name: t.detach().to("cpu").contiguous() for name, t in tensors.items()}
    atomic_write(output, lambda tmp: save_file(cpu, str(tmp), metadata=metadata))
    return output


def is_hub_folder(folder) -> bool:
    """Whether ``folder`` holds a Hub folder's export file."""
    return (Path(folder) / HUB_WEIGHTS).is_file()


def check_hub_output(output) -> Path:
    """``output`` as a Path, when a Hub folder may be written there: nothing, an empty folder or an earlier Hub
    folder (replaced whole); ConfigError otherwise."""
    output = Path(output)
    if output.exists() and not (output.is_dir() and (is_hub_folder(output) or not any(output.iterdir()))):
        raise ConfigError(f"--output {output} exists and is not a Hub folder (no {HUB_WEIGHTS}); a Hub folder is "
                          "written whole, replacing what is there: choose a new folder name, or remove it first.")
    return output


def export_hub(run_dir, output) -> Path:
    """Write the Hub folder of the finished run ``run_dir`` to ``output`` (see the module docstring): built in a
    temporary sibling, then moved into place (an earlier Hub folder there is replaced); returns ``output``."""
    from convlora_lite.inference.model_card import model_card
    from convlora_lite.training.rundir import RunDir

    run = RunDir(run_dir)
    if Path(output).suffix == ".safetensors":
        raise ConfigError(f"--output {output}: --format hub writes a folder; name it e.g. my_model (or use "
                          "--format safetensors for one file).")
    output = check_hub_output(output)
    if not run.is_complete():
        raise CheckpointError(f"{run.path} is not a finished run directory (no {run.metrics.name} with test "
                              "scores, which the model card reports): pass the folder a finished `convlora train` "
                              "wrote, or finish the run first (the same command with --resume).")

    def write(folder: Path) -> None:
        tensors, config, spec, base = read_export(export_run(run.path, folder / HUB_WEIGHTS, public=True))
        hub = RunDir(folder)  # the config under a run directory's name for it (also the Hub's download counter)
        hub.write_config(config)
        card = model_card(config, spec, base, run.read_metrics(), n_parameters=sum(t.numel() for t in tensors.values()),
                          weights_file=HUB_WEIGHTS, config_file=hub.config.name)
        atomic_write(folder / HUB_CARD, lambda tmp: tmp.write_text(card))

    atomic_folder(output, write)
    return output


def read_export(path) -> tuple[dict, dict, dict, dict]:
    """``(tensors, config dict, spec dict, base reference)`` of an export; CheckpointError for a
    file that is not one."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path} does not exist; pass a run directory or a file written by `convlora export`.")
    try:
        with safe_open(str(path), framework="pt") as f:
            metadata = f.metadata() or {}
    except Exception as error:
        raise CheckpointError(f"{path} is not a readable safetensors file ({type(error).__name__}).") from error
    if metadata.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a convlora export (no '{FORMAT}' metadata): it may be SAM weights or "
                              "another model's file. Pass a run directory or a file written by `convlora export`.")
    return (load_file(str(path)), json.loads(metadata["config"]), json.loads(metadata["spec"]),
            json.loads(metadata["base"]))


def _spec_from(summary: dict):
    from convlora_lite.data.own import OwnDataSpec

    return OwnDataSpec.from_dict(summary)


def load_export(path, checkpoint=None):
    """``(model, config, spec)`` of an export: the base SAM rebuilt by reference (its checksum
    checked) with the exported trainable tensors, in eval mode on the CPU. ``checkpoint``: where the
    base weights lie here, when not where the run found them (a path; its sha256 must match)."""
    import dataclasses

    from accelerate.utils import set_seed

    from convlora_lite.peft.state import load_trainable
    from convlora_lite.training.model import build_model

    tensors, config_dict, summary, base = read_export(path)
    config = TrainConfig.from_dict(config_dict)
    if checkpoint is not None:
        config = dataclasses.replace(config, checkpoint=str(checkpoint))
    current = base_reference(config)
    if (current["model"], current["sha256"]) != (base["model"], base["sha256"]):
        raise CheckpointError(f"{path} was exported for {base['model']} with base weights {base['file']} "
                              f"(sha256 {base['sha256']}), but here {config.checkpoint!r} resolves to "
                              f"{current['file']} (sha256 {current['sha256']}): an export for another model. "
                              "Use the SAM checkpoint it was trained on.")
    set_seed(config.seed)
    config = dataclasses.replace(config, activation_checkpointing=False)
    model = build_model(config)
    load_trainable(model, tensors, str(path))
    return model.eval(), config, _spec_from(summary)


def load_source(source, checkpoint=None):
    """``(model, config, spec)`` of a run directory, an export file or a Hub folder (``checkpoint``: see
    :func:`load_export`; exports only)."""
    from convlora_lite.training.model import load_run
    from convlora_lite.training.run_data import run_spec
    from convlora_lite.training.rundir import RunDir

    source = Path(source)
    if source.is_file():
        return load_export(source, checkpoint)
    if is_hub_folder(source):
        return load_export(source / HUB_WEIGHTS, checkpoint)
    if not source.is_dir():
        raise CheckpointError(f"{source} does not exist; pass a run directory, an export .safetensors file or a "
                              "Hub folder.")
    run = RunDir(source)
    if not run.config.exists():
        raise CheckpointError(f"{source} is not a run directory (no config.json); pass the folder `convlora train` "
                              "wrote, an export .safetensors file, or a Hub folder (`convlora export --format hub`, "
                              "`convlora hub pull`).")
    if not run.has_weights():
        raise CheckpointError(f"{source} has no weights ({run.best} is missing): the run has not finished an epoch. "
                              "Train it (or --resume it) first.")
    model, config = load_run(source)
    return model, config, _spec_from(spec_summary(run_spec(source)))


# ----------------------------------------------------------------------------------- merging
def merged_sam_state(model, config) -> dict[str, torch.Tensor]:
    """A Meta-format SAM state dict of a binary LoRA (or decoder-only) model (see the module docstring)."""
    from accelerate.utils import set_seed

    from convlora_lite.models.sam import build_sam
    from convlora_lite.peft.lora import LoRALinear

    if config.method.startswith("conv_lora"):
        raise ConfigError(f"{config.method} cannot be merged into SAM: its mixture of convolutional experts is "
                          "non-linear and depends on the input, so no single qkv weight equals it. Use the export "
                          "file (convlora export without --merged-sam) with convlora predict instead.")
    if config.method not in MERGEABLE:
        raise ConfigError(f"{config.method} adds modules that SAM's format has no place for; only "
                          f"{', '.join(MERGEABLE)} models can be merged. Use the export file instead.")
    if not model.is_binary:
        raise ConfigError("a multi-class model's class head has no place in SAM's format; only binary models can "
                          "be merged. Use the export file instead.")
    set_seed(config.seed)  # the same base as the run's (random bases are drawn from the seed)
    sam = build_sam(config.model, config.checkpoint, image_size=config.image_size)
    merged = {k: v.clone() for k, v in sam.state_dict().items()}
    trained = model.state_dict()
    for i, block in enumerate(model.image_encoder.blocks):
        qkv, prefix = block.attn.qkv, f"image_encoder.blocks.{i}.attn.qkv"
        if isinstance(qkv, LoRALinear):
            update = qkv.scaling * (qkv.lora_B.detach() @ qkv.lora_A.detach())
            merged[f"{prefix}.weight"] = qkv.base.weight.detach() + update
            if qkv.base.bias is not None:
                merged[f"{prefix}.bias"] = qkv.base.bias.detach().clone()
    for name, value in trained.items():
        if name in merged and merged[name].shape == value.shape and ".qkv." not in name:
            merged[name] = value.detach().clone()
    tokens = "mask_decoder.mask_tokens.weight"
    merged[tokens][0] = trained[tokens][0]  # the prompt-free model's mask token is SAM's token 0
    return {k: v.contiguous() for k, v in merged.items()}


def export_merged_sam(source, output) -> Path:
    """Write :func:`merged_sam_state` of a run directory or export to ``output`` (``torch.save``, ``.pth``)."""
    model, config, _ = load_source(source)
    state = merged_sam_state(model, config)
    output = Path(output)
    atomic_write(output, lambda tmp: torch.save(state, tmp))
    return output

