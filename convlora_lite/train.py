"""The training loop: official Conv-LoRA recipe, one run directory per run, resumable.

``fit(config)`` trains a :class:`~convlora_lite.segmenter.PromptFreeSAM` with a PEFT method on a
registry dataset and returns the run directory (layout in :mod:`convlora_lite.rundir`).

The recipe (REFERENCE.md, "Training recipe"), all of it the default:

* AdamW (0.9, 0.999, eps 1e-6), weight decay 1e-4 except on biases and normalisation weights.
  The rule is the official one (AutoGluon's ``get_weight_decay_param_names``: every parameter of
  a norm layer and every parameter whose name contains ``bias`` is left out); other 1-D or
  embedding tensors (mask tokens, position tables, gates) do decay. SAM's ``LayerNorm2d`` counts
  as a norm layer.
* Linear decay of the learning rate to 0 over all optimizer steps, no warm-up: step ``s`` of
  ``T`` uses ``lr * (1 - s / T)``; after the last step the rate is 0.
* Gradient clipping at norm 1.0; mixed precision on GPU (fp16 with a gradient scaler, or bf16);
  batch ``batch_size`` per process, ``grad_accum`` batches per optimizer step. The last group of
  an epoch may be shorter; its loss is averaged over the batches it has (a true mean), where
  Lightning divides by ``grad_accum`` regardless.
* Loss = task loss (the dataset's ``loss``) + the adapters' auxiliary loss (weight 1).
* Validation every epoch; the best checkpoint by the dataset's ``select_metric``/``select_mode``;
  optional early stopping; at the end the test splits are scored with the best weights.

Multi-process (``accelerate launch`` or ``torchrun``): data parallel through Hugging Face
Accelerate; each process trains on its shard of every epoch's permutation, gradients are averaged;
validation and testing run on the main process only (the others wait), which alone writes the run
directory. Data order does not depend on the RNG state: epoch ``e`` uses the permutation seeded by
``(seed, e)``, which is what makes ``resume`` end exactly where an uninterrupted run ends.
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
import random
import time
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import torch
from torch import nn
from torch.utils.checkpoint import checkpoint as activation_checkpoint
from torch.utils.data import DataLoader, Dataset, Subset
from tqdm.auto import tqdm

from .errors import ConfigError, DataError
from .presets import OFFICIAL_SEED, get_preset
from .rundir import RunDir

PRECISIONS = ("auto", "fp32", "fp16", "bf16")
DEVICES = ("auto", "cuda", "mps", "cpu")
#: config fields that may change between a run and its resume (where the run and the data lie,
#: how they are loaded); any other difference is a ConfigError.
_RESUME_FREE_FIELDS = ("resume", "num_workers", "output_dir", "data_root")


@dataclass
class TrainConfig:
    """Everything that defines a run; written to ``config.json`` (enough to rerun it).

    Build one with :meth:`resolve` (preset + dataset recipe + explicit overrides). Fields:
    ``checkpoint`` is what :func:`~convlora_lite.sam.build_sam` loads (``"auto"``: official or
    bundled weights; ``None``: random); ``num_classes`` is 1 for binary tasks, else K with the
    background; ``max_grad_norm=None`` disables clipping; ``early_stopping_patience=None`` disables
    early stopping; ``max_train_batches``/``max_eval_batches`` cap the batches per epoch/evaluation
    (``None``: all); ``method_options`` are the PEFT method's options (its defaults included).
    """

    dataset: str
    method: str
    preset: str = "cpu"
    model: str = "micro_sam"
    checkpoint: Optional[str] = "auto"
    seed: int = OFFICIAL_SEED
    output_dir: Optional[str] = None
    data_root: str = "data"
    image_size: int = 256
    num_classes: int = 1
    epochs: int = 1
    lr: float = 1e-4
    batch_size: int = 1
    grad_accum: int = 1
    weight_decay: float = 1e-4
    max_grad_norm: Optional[float] = 1.0
    precision: str = "auto"
    activation_checkpointing: bool = False
    device: str = "auto"
    early_stopping_patience: Optional[int] = None
    max_train_batches: Optional[int] = None
    max_eval_batches: Optional[int] = None
    num_workers: int = 0
    method_options: dict = field(default_factory=dict)
    resume: bool = False

    @classmethod
    def resolve(cls, dataset: str, method: str, preset: str = "cpu", *, spec=None, **overrides) -> "TrainConfig":
        """The config of ``method`` on ``dataset`` under ``preset``; explicit ``overrides`` win.

        Order: the preset's settings, then the dataset's official recipe for what the preset
        leaves open (``epochs``, ``lr``), then ``overrides`` (``image_size=None`` means the
        model's native size; ``checkpoint=None`` random weights). ``spec`` is the dataset's
        :class:`~convlora_lite.data.registry.DatasetSpec` (default: the registry's entry).
        """
        from .peft import get_method
        from .sam import get_config

        unknown = set(overrides) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise ConfigError(f"Unknown training option(s) {sorted(unknown)}; "
                              f"TrainConfig takes {[f.name for f in dataclasses.fields(cls)]}.")
        given = dict(overrides)
        p = get_preset(preset)
        spec = spec if spec is not None else _dataset_spec(dataset)
        peft = get_method(method)
        model = given.get("model", p.model)
        seed = given.get("seed", p.seed)
        values = dict(
            dataset=dataset, method=method, preset=preset, model=model, seed=seed,
            image_size=p.image_size,
            num_classes=1 if spec.task == "binary" else len(spec.classes),
            epochs=p.epochs or spec.epochs, lr=p.lr or spec.lr, batch_size=p.batch_size, grad_accum=p.grad_accum,
            precision=p.precision, activation_checkpointing=p.activation_checkpointing,
            early_stopping_patience=p.early_stopping_patience, max_train_batches=p.max_train_batches,
            max_eval_batches=p.max_eval_batches, num_workers=p.num_workers,
            output_dir=str(Path("runs") / dataset / method / f"seed{seed}"),
        )
        values.update(given)
        values["image_size"] = values["image_size"] or get_config(model).image_size
        values["method_options"] = {**peft.defaults, **(given.get("method_options") or {})}
        config = cls(**values)
        config.validate()
        return config

    def validate(self) -> None:
        """Raise :class:`ConfigError` for a value no run can use."""
        from .sam import get_config

        if self.precision not in PRECISIONS:
            raise ConfigError(f"precision={self.precision!r}; choose one of {', '.join(PRECISIONS)}.")
        if self.device not in DEVICES:
            raise ConfigError(f"device={self.device!r}; choose one of {', '.join(DEVICES)}.")
        for name in ("epochs", "batch_size", "grad_accum", "image_size"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise ConfigError(f"{name}={getattr(self, name)!r} must be a positive integer.")
        patch = get_config(self.model).patch_size
        if self.image_size % patch:
            raise ConfigError(f"image_size={self.image_size} must be a multiple of {self.model}'s patch size {patch}.")
        if not isinstance(self.lr, (int, float)) or self.lr <= 0:
            raise ConfigError(f"lr={self.lr} must be positive.")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "TrainConfig":
        return cls(**data)


# --------------------------------------------------------------------------------------------
# building blocks


def _dataset_spec(name: str):
    from .data.registry import get_dataset_spec

    return get_dataset_spec(name)


def resolve_device(name: str) -> str:
    """``"auto"`` -> ``cuda`` if available, else ``mps``, else ``cpu``; a clear error when the
    requested device is not there."""
    cuda, mps = torch.cuda.is_available(), torch.backends.mps.is_available()
    if name == "auto":
        return "cuda" if cuda else "mps" if mps else "cpu"
    if (name == "cuda" and not cuda) or (name == "mps" and not mps):
        raise ConfigError(f"device={name!r} is not available on this machine; use --device auto or cpu.")
    return name


def resolve_precision(precision: str, device: str) -> str:
    """``"auto"`` -> fp16 on CUDA (the official setting), else fp32. fp16 needs CUDA."""
    if precision == "auto":
        return "fp16" if device == "cuda" else "fp32"
    if precision == "fp16" and device != "cuda":
        raise ConfigError(f"precision 'fp16' needs a CUDA GPU (device is {device!r}); use --precision fp32 or bf16.")
    return precision


def build_model(config: TrainConfig) -> nn.Module:
    """``PromptFreeSAM(build_sam(model, checkpoint, image_size), num_classes)`` with the PEFT
    method applied and, if asked, activation checkpointing of the encoder blocks."""
    from .peft import apply_peft
    from .sam import build_sam
    from .segmenter import PromptFreeSAM

    sam = build_sam(config.model, config.checkpoint, image_size=config.image_size)
    model = PromptFreeSAM(sam, num_classes=config.num_classes)
    apply_peft(model, config.method, **config.method_options)
    if config.activation_checkpointing:
        enable_activation_checkpointing(model.image_encoder)
    return model


def enable_activation_checkpointing(encoder: nn.Module) -> None:
    """Recompute each of ``encoder.blocks`` in the backward pass instead of storing its
    activations (``torch.utils.checkpoint``, non-reentrant, RNG state preserved), in training
    with gradients on only. Parameter names are unchanged (the block's ``forward`` is wrapped)."""
    for block in encoder.blocks:
        def forward(x, _block=block, _forward=block.forward):
            if _block.training and torch.is_grad_enabled():
                return activation_checkpoint(_forward, x, use_reentrant=False)
            return _forward(x)
        block.forward = forward


def _is_norm(module: nn.Module) -> bool:
    from segment_anything.modeling.common import LayerNorm2d

    norms = (nn.LayerNorm, nn.GroupNorm, nn.modules.batchnorm._BatchNorm, nn.modules.instancenorm._InstanceNorm, LayerNorm2d)
    return isinstance(module, norms)


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """AdamW parameter groups over the trainable parameters: ``[decay, no_decay]``.

    No decay on every parameter of a normalisation layer and on every parameter whose name
    contains ``bias`` (the official rule); each group carries ``names`` for inspection.
    """
    no_decay_ids = {id(p) for m in model.modules() if _is_norm(m) for p in m.parameters(recurse=False)}
    groups = {True: ([], []), False: ([], [])}
    for name, p in model.named_parameters():
        if p.requires_grad:
            decays = "bias" not in name and id(p) not in no_decay_ids
            groups[decays][0].append(p)
            groups[decays][1].append(name)
    return [{"params": groups[True][0], "names": groups[True][1], "weight_decay": weight_decay},
            {"params": groups[False][0], "names": groups[False][1], "weight_decay": 0.0}]


def build_optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.AdamW:
    """AdamW (0.9, 0.999, eps 1e-6) over :func:`param_groups`."""
    return torch.optim.AdamW(param_groups(model, config.weight_decay), lr=config.lr, betas=(0.9, 0.999), eps=1e-6)


def linear_decay(optimizer: torch.optim.Optimizer, total_steps: int) -> torch.optim.lr_scheduler.LambdaLR:
    """``lr * (1 - step / total_steps)``, no warm-up; 0 after ``total_steps`` steps."""
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: max(0.0, 1.0 - step / total_steps))


def trainable_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """The trainable tensors (adapter + trained decoder), by parameter name."""
    return {name: p.detach() for name, p in model.named_parameters() if p.requires_grad}


def load_trainable(model: nn.Module, tensors: dict[str, torch.Tensor], source="checkpoint") -> None:
    """Copy ``tensors`` into the trainable parameters of ``model``; they must match exactly."""
    from .errors import CheckpointError

    expected = {name: p for name, p in model.named_parameters() if p.requires_grad}
    missing, extra = sorted(set(expected) - set(tensors)), sorted(set(tensors) - set(expected))
    if missing or extra:
        raise CheckpointError(f"{source} does not fit this model: missing {missing[:5]}, unexpected {extra[:5]}. "
                              "Was it written by a run with another method or model?")
    with torch.no_grad():
        for name, p in expected.items():
            if p.shape != tensors[name].shape:
                raise CheckpointError(f"{source}: {name} has shape {tuple(tensors[name].shape)}, "
                                      f"the model expects {tuple(p.shape)}.")
            p.copy_(tensors[name])


def make_loss(spec, num_classes: int) -> Callable:
    """``loss(output: SegOutput, mask) -> 0-dim`` for the dataset's ``loss`` (aux loss not included).

    Binary: ``loss(logits (B,1,S,S), mask (B,1,S,S))``; multi-class: the set loss on
    ``mask_logits``/``class_logits`` against the ``(B,S,S)`` label map.
    """
    from .losses import get_loss

    if spec.task == "binary":
        loss = get_loss(spec.loss)
        return lambda out, mask: loss(out.logits, mask.unsqueeze(1).to(out.logits.dtype))
    loss = get_loss(spec.loss, num_classes=num_classes)
    return lambda out, mask: loss(out.mask_logits, out.class_logits, mask)


def _metrics(spec, num_classes: int):
    from .metrics import BinarySegMetrics, MultiClassSegMetrics

    if spec.task == "binary":
        return BinarySegMetrics()
    return MultiClassSegMetrics(num_classes, ignore_index=255, class_names=tuple(spec.classes))


@torch.no_grad()
def evaluate_model(model: nn.Module, dataset: Dataset, spec, *, batch_size: int = 1, device="cpu",
                   max_batches: Optional[int] = None, autocast=nullcontext, desc: str = "eval") -> dict:
    """Score ``model`` on ``dataset`` with the task's metrics.

    Binary: :class:`BinarySegMetrics` on ``model.predict`` probabilities; multi-class:
    :class:`MultiClassSegMetrics` on ``predict(...).argmax(1)``.
    """
    metrics = _metrics(spec, getattr(model, "num_classes", 1))
    was_training = model.training
    model.eval()
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False)
    total = len(loader) if max_batches is None else min(len(loader), max_batches)
    for i, batch in enumerate(tqdm(loader, total=total, desc=desc, leave=False)):
        if i == total:
            break
        with autocast():
            probs = model.predict(batch["image"].to(device)).float().cpu()
        if spec.task == "binary":
            metrics.update(probs, batch["mask"])
        else:
            metrics.update(probs.argmax(1), batch["mask"])
    model.train(was_training)
    return metrics.compute()


def build_datasets(config: TrainConfig, spec, log=print) -> dict[str, Dataset]:
    """``{"train", "val", *spec.test_splits}`` -> Dataset from the registry's files under
    ``config.data_root``; a missing ``synth_`` dataset is generated first, a missing real one is
    a :class:`DataError` that says how to download it."""
    from .data.datasets import build_dataset

    ensure_data(spec, config.data_root, log)
    return {split: build_dataset(spec.name, split, config.data_root, config.image_size, train=(split == "train"))
            for split in ("train", "val", *spec.test_splits)}


def ensure_data(spec, root, log=print) -> None:
    """Make sure ``spec``'s files are under ``root``: generate a synthetic analog, or explain
    how to download a real dataset."""
    if spec.dataset_dir(root).exists():
        return
    if spec.synthetic:
        from .data.synthetic import generate_synthetic

        log(f"{spec.name} is not in {root}: generating it (synthetic, offline)...")
        generate_synthetic(spec.name, root)
        return
    raise DataError(f"Dataset {spec.name!r} is not in {Path(root).resolve()} (looked for {spec.dataset_dir(root)}). "
                    f"Download it with `convlora data download {spec.name} --root {root}`, or pass --root.")


def _accelerator(device: str, precision: str):
    """An ``Accelerator`` on ``device`` with ``precision`` (DDP tolerates parameters that get no
    gradient, e.g. Conv-LoRA's gate on a step where only the task loss reaches it).

    Accelerate keeps one process-wide state that refuses a second precision or device; in a
    single process (a notebook fitting a CPU run, then a bf16 one) that state is reset first.
    Under a multi-process launch it is left alone."""
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState, GradientState
    from accelerate.utils import DistributedDataParallelKwargs

    if int(os.environ.get("WORLD_SIZE", "1")) == 1:
        AcceleratorState._reset_state(reset_partial_state=True)
        GradientState._reset_state()
    return Accelerator(cpu=device == "cpu", mixed_precision={"fp32": "no", "fp16": "fp16", "bf16": "bf16"}[precision],
                       kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=True)])


def _rng_state() -> dict:
    return {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None}


def _set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    if state["cuda"] is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _scalars(metrics: dict) -> dict:
    return {k: float(v) for k, v in metrics.items() if isinstance(v, (int, float))}


# --------------------------------------------------------------------------------------------
# the trainer


class Trainer:
    """Trains one run. ``Trainer(config).fit()`` or :func:`fit`.

    Args:
        config: a resolved :class:`TrainConfig`.
        spec: the dataset's spec (default: the registry's entry for ``config.dataset``); any
            object with ``task``, ``classes``, ``loss``, ``select_metric``, ``select_mode`` and
            ``test_splits`` works, to train on data of your own.
        datasets: ``{"train", "val", *test splits}`` -> Dataset (default: built from the
            registry's files); items are ``dict(image=(3,S,S) float, mask=(S,S), name=str)``.
        on_epoch_end: called as ``on_epoch_end(epoch, history_row)`` after each epoch has been
            saved (an exception raised there interrupts the run like a crash would).
    """

    def __init__(self, config: TrainConfig, *, spec=None, datasets: Optional[dict] = None,
                 on_epoch_end: Optional[Callable[[int, dict], None]] = None) -> None:
        from accelerate.utils import set_seed

        config.validate()
        self.config = config
        self.spec = spec if spec is not None else _dataset_spec(config.dataset)
        self.device = resolve_device(config.device)
        self.precision = resolve_precision(config.precision, self.device)
        self.accelerator = _accelerator(self.device, self.precision)
        self.is_main = self.accelerator.is_main_process
        self.run = RunDir(config.output_dir or "run")
        self.on_epoch_end = on_epoch_end
        self.state = self._previous_state()
        if self.state.get("completed"):
            return
        if datasets is None:
            with self.accelerator.main_process_first():
                datasets = build_datasets(config, self.spec, log=self.log)
        missing = {"train", "val"} - set(datasets)
        if missing:
            raise DataError(f"datasets lacks the split(s) {sorted(missing)}; give at least train and val.")
        empty = [split for split, data in datasets.items() if len(data) == 0]
        if empty:
            raise DataError(f"The split(s) {empty} of {config.dataset} hold no images; check the dataset's files.")
        self.datasets = datasets
        set_seed(config.seed)
        model = build_model(config)
        self.loss_fn = make_loss(self.spec, config.num_classes)
        optimizer = build_optimizer(model, config)
        self.steps_per_epoch = math.ceil(self._batches_per_epoch() / config.grad_accum)
        self.scheduler = linear_decay(optimizer, config.epochs * self.steps_per_epoch)
        self.model, self.optimizer = self.accelerator.prepare(model, optimizer)
        if "resume" in self.state:
            self._load_resume_state(self.state["resume"])

    # ---- the run directory ----------------------------------------------------------------

    def log(self, message: str) -> None:
        if self.is_main:
            tqdm.write(message)

    def _previous_state(self) -> dict:
        """What the run directory already holds: ``{}`` for a fresh run, ``{"completed": True}``
        for a finished one, ``{"resume": state}`` to continue."""
        cfg, run = self.config, self.run
        if not run.config.exists():
            if cfg.resume:
                self.log(f"Nothing to resume in {run.path}: starting a new run.")
            return {}
        if not cfg.resume:
            raise ConfigError(f"{run.path} already holds a run. Pass --resume to continue it, "
                              "or choose another --output-dir (or delete that folder).")
        stored = run.read_json(run.config)
        current = cfg.to_dict()
        changed = sorted(k for k in current if k not in _RESUME_FREE_FIELDS and stored.get(k) != _jsonable(current[k]))
        if changed:
            details = "; ".join(f"{k}: run has {stored.get(k)!r}, now {current[k]!r}" for k in changed)
            raise ConfigError(f"Cannot resume {run.path} with a different configuration ({details}). "
                              "Use the same options, or another --output-dir for a new run.")
        if run.metrics.exists() and run.read_json(run.metrics).get("completed"):
            self.log(f"{run.path} is already complete: nothing to resume.")
            return {"completed": True}
        if not run.resume_state.exists():
            self.log(f"{run.path} has no completed epoch: starting it again.")
            return {}
        return {"resume": run.load_state()}

    def _save_epoch(self, history: list[dict], best: dict, improved: bool, patience_left, stopped: bool,
                    rng_states: list) -> None:
        model = self.accelerator.unwrap_model(self.model)
        weights = trainable_state(model)
        self.run.save_tensors(self.run.last, weights)
        if improved:
            self.run.save_tensors(self.run.best, weights)
        self.run.write_history(history)
        scaler = self.accelerator.scaler
        self.run.save_state({
            "epoch": len(history), "history": history, "best": best, "patience_left": patience_left,
            "stopped_early": stopped, "weights": {k: v.cpu().clone() for k, v in weights.items()},
            "optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
            "scaler": scaler.state_dict() if scaler is not None else None, "rng": rng_states,
            "world_size": self.accelerator.num_processes,
        })

    def _load_resume_state(self, state: dict) -> None:
        load_trainable(self.accelerator.unwrap_model(self.model), state["weights"], "resume state")
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        if state["scaler"] is not None and self.accelerator.scaler is not None:
            self.accelerator.scaler.load_state_dict(state["scaler"])
        rank = self.accelerator.process_index
        if state["world_size"] == self.accelerator.num_processes:
            _set_rng_state(state["rng"][rank])
        else:
            self.log(f"Resuming with {self.accelerator.num_processes} processes instead of {state['world_size']}: "
                     "the random streams differ from an uninterrupted run.")
            _set_rng_state(state["rng"][0])
        self.log(f"Resuming {self.run.path} after epoch {state['epoch']} of {self.config.epochs}.")

    # ---- data -------------------------------------------------------------------------------

    def _epoch_indices(self, epoch: int) -> list[int]:
        """This process's share of epoch ``epoch``'s permutation (padded so every process has
        as many samples as the others, as ``DistributedSampler`` does)."""
        n, world = len(self.datasets["train"]), self.accelerator.num_processes
        generator = torch.Generator().manual_seed(self.config.seed * 1000 + epoch)
        order = torch.randperm(n, generator=generator).tolist()
        padded = order + order[: (-n) % world]
        return padded[self.accelerator.process_index::world]

    def _batches_per_epoch(self) -> int:
        per_process = math.ceil(len(self.datasets["train"]) / self.accelerator.num_processes)
        batches = math.ceil(per_process / self.config.batch_size)
        return batches if self.config.max_train_batches is None else min(batches, self.config.max_train_batches)

    def _train_loader(self, epoch: int) -> DataLoader:
        generator = torch.Generator().manual_seed(self.config.seed * 1000 + epoch)
        return DataLoader(Subset(self.datasets["train"], self._epoch_indices(epoch)), batch_size=self.config.batch_size,
                          shuffle=False, num_workers=self.config.num_workers, generator=generator,
                          pin_memory=self.device == "cuda")

    # ---- the loop ---------------------------------------------------------------------------

    def train_epoch(self, epoch: int) -> dict:
        """One epoch; returns ``{"train_loss", "aux_loss", "lr"}`` (means over all processes)."""
        cfg, acc = self.config, self.accelerator
        self.model.train()
        num_batches = self._batches_per_epoch()
        sums = torch.zeros(3, device=acc.device)  # task loss, aux loss, batches
        lr = self.optimizer.param_groups[0]["lr"]
        bar = tqdm(total=num_batches, desc=f"epoch {epoch + 1}/{cfg.epochs}", leave=False, disable=not self.is_main)
        for i, batch in enumerate(self._train_loader(epoch)):
            if i == num_batches:
                break
            group_start = i - i % cfg.grad_accum
            group_size = min(cfg.grad_accum, num_batches - group_start)
            step_now = i + 1 == group_start + group_size
            images, masks = batch["image"].to(acc.device), batch["mask"].to(acc.device)
            with nullcontext() if step_now else acc.no_sync(self.model):
                with acc.autocast():
                    out = self.model(images)
                    task_loss = self.loss_fn(out, masks)
                    loss = (task_loss + out.aux_loss) / group_size
                acc.backward(loss)
            sums += torch.stack([task_loss.detach().float(), out.aux_loss.detach().float(), torch.ones((), device=acc.device)])
            if step_now:
                lr = self.optimizer.param_groups[0]["lr"]
                if cfg.max_grad_norm is not None:
                    acc.clip_grad_norm_(self.model.parameters(), cfg.max_grad_norm)
                self.optimizer.step()
                if not acc.optimizer_step_was_skipped:
                    self.scheduler.step()
                self.optimizer.zero_grad(set_to_none=True)
            bar.update(1)
            bar.set_postfix(loss=f"{task_loss.item():.4f}")
        bar.close()
        sums = acc.reduce(sums, reduction="sum")
        return {"train_loss": (sums[0] / sums[2]).item(), "aux_loss": (sums[1] / sums[2]).item(), "lr": lr}

    def evaluate(self, split: str) -> dict:
        """The task's metrics of the current weights on ``split`` (main process)."""
        return evaluate_model(self.accelerator.unwrap_model(self.model), self.datasets[split], self.spec,
                              batch_size=self.config.batch_size, device=self.accelerator.device,
                              max_batches=self.config.max_eval_batches, autocast=self.accelerator.autocast,
                              desc=f"eval {split}")

    def _better(self, value: float, best: Optional[float]) -> bool:
        if best is None:
            return True
        return value > best if self.spec.select_mode == "max" else value < best

    def fit(self) -> Path:
        """Train (or continue) the run; returns the run directory."""
        from accelerate.utils import broadcast_object_list, gather_object

        cfg, acc, run = self.config, self.accelerator, self.run
        if self.state.get("completed"):
            return run.path
        resume = self.state.get("resume", {})
        history = list(resume.get("history", []))
        best = resume.get("best", {"epoch": None, "value": None, "val": None})
        patience_left = resume.get("patience_left", cfg.early_stopping_patience)
        stopped = resume.get("stopped_early", False)
        if self.is_main:
            run.create()
            run.write_json(run.config, _jsonable(dataclasses.replace(cfg, resume=False).to_dict()))
        for epoch in range(len(history), cfg.epochs):
            if stopped:
                break
            start = time.perf_counter()
            row = {"epoch": epoch + 1, **self.train_epoch(epoch)}
            improved = False
            if self.is_main:
                val = self.evaluate("val")
                row.update({f"val_{k}": v for k, v in _scalars(val).items()})
                value = float(val[self.spec.select_metric])
                improved = self._better(value, best["value"])
                if improved:
                    best = {"epoch": epoch + 1, "value": value, "val": _jsonable(val)}
                    patience_left = cfg.early_stopping_patience
                elif patience_left is not None:
                    patience_left -= 1
                stopped = patience_left is not None and patience_left <= 0 and epoch + 1 < cfg.epochs
            row["time_s"] = round(time.perf_counter() - start, 3)
            history.append(row)
            rng_states = gather_object([_rng_state()])
            if self.is_main:
                self._save_epoch(history, best, improved, patience_left, stopped, rng_states)
                if stopped:
                    self.log(f"Early stopping after epoch {epoch + 1}: no better {self.spec.select_metric} "
                             f"for {cfg.early_stopping_patience} epochs.")
            flags = [stopped]
            broadcast_object_list(flags)
            stopped = flags[0]
            acc.wait_for_everyone()
            if self.on_epoch_end is not None:
                self.on_epoch_end(epoch + 1, row)
        if self.is_main:
            self._finish(history, best, stopped)
        acc.wait_for_everyone()
        return run.path

    def _finish(self, history: list[dict], best: dict, stopped: bool) -> None:
        """Score the test splits with the best weights (at most ``max_eval_batches`` batches each, as
        validation; :func:`evaluate` scores a whole split); write metrics.json and the figure."""
        model = self.accelerator.unwrap_model(self.model)
        load_trainable(model, self.run.load_tensors(self.run.best), str(self.run.best))
        tests = [s for s in self.datasets if s not in ("train", "val")]
        test = {split: _jsonable(self.evaluate(split)) for split in tests}
        self.run.write_json(self.run.metrics, {
            "dataset": self.config.dataset, "method": self.config.method, "model": self.config.model,
            "seed": self.config.seed, "select_metric": self.spec.select_metric, "select_mode": self.spec.select_mode,
            "best_epoch": best["epoch"], "epochs_run": len(history), "stopped_early": stopped,
            "val": best["val"], "test": test, "max_eval_batches": self.config.max_eval_batches, "completed": True,
        })
        plot_history(history, self.run.figures / "loss_curve.png", self.spec.select_metric)
        for split, metrics in test.items():
            shown = ", ".join(f"{k} {v:.4f}" for k, v in _scalars(metrics).items())
            self.log(f"test {split}: {shown}")


def _jsonable(value):
    """Plain JSON types (numpy / torch scalars to float, tuples to lists)."""
    return json.loads(json.dumps(value, default=lambda v: v.item() if hasattr(v, "item") else str(v)))


def plot_history(history: list[dict], path: Path, select_metric: str) -> None:
    """Training loss (and aux loss) per epoch, with the validation selection metric on a second axis.

    Drawn on a bare ``Figure`` (no pyplot), so saving it never changes the caller's matplotlib
    backend: notebooks keep showing their own figures after a ``fit``.
    """
    from matplotlib.figure import Figure

    epochs = [row["epoch"] for row in history]
    fig = Figure(figsize=(6, 4))
    ax = fig.subplots()
    ax.plot(epochs, [row["train_loss"] for row in history], marker="o", label="train loss")
    ax.plot(epochs, [row["aux_loss"] for row in history], marker=".", label="aux loss")
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    key = f"val_{select_metric}"
    if all(key in row for row in history):
        other = ax.twinx()
        other.plot(epochs, [row[key] for row in history], color="tab:green", marker="s", label=f"val {select_metric}")
        other.set_ylabel(f"val {select_metric}")
        other.legend(loc="upper right")
    ax.legend(loc="upper left")
    ax.set_title("Training loss and validation metric")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)


# --------------------------------------------------------------------------------------------
# public entry points


def fit(config: TrainConfig, *, spec=None, datasets: Optional[dict] = None,
        on_epoch_end: Optional[Callable[[int, dict], None]] = None) -> Path:
    """Train ``config`` (see :class:`Trainer` for the arguments); returns the run directory."""
    return Trainer(config, spec=spec, datasets=datasets, on_epoch_end=on_epoch_end).fit()


def end_distributed() -> None:
    """Destroy the default process group of a multi-process launch, if there is one.

    Call it once, at the end of a script that ran :func:`fit` under ``accelerate launch`` (the
    ``convlora`` command does). Without it, gloo's worker threads can abort the interpreter as it
    exits ("terminate called without an active exception", an intermittent SIGABRT)."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


def load_run(run_dir) -> tuple[nn.Module, TrainConfig]:
    """``(model, config)`` of a finished run: the model rebuilt from ``config.json`` (frozen
    weights from ``config.checkpoint``, or from the seed for a random model) with the best
    trainable weights, in eval mode on the CPU."""
    from accelerate.utils import set_seed

    run = RunDir(run_dir)
    config = TrainConfig.from_dict(run.read_json(run.config))
    set_seed(config.seed)
    config = dataclasses.replace(config, activation_checkpointing=False)
    model = build_model(config)
    load_trainable(model, run.load_tensors(run.best), str(run.best))
    return model.eval(), config


def evaluate(run_dir, split: str = "test", *, spec=None, dataset: Optional[Dataset] = None,
             device: str = "auto") -> dict:
    """The task's metrics of a finished run's best weights on ``split`` (built from the registry
    under the run's ``data_root`` unless ``dataset`` is given)."""
    model, config = load_run(run_dir)
    spec = spec if spec is not None else _dataset_spec(config.dataset)
    if dataset is None:
        from .data.datasets import build_dataset

        if split not in ("train", "val", *spec.test_splits):
            raise ConfigError(f"{config.dataset} has no split {split!r}; choose one of "
                              f"{', '.join(('train', 'val', *spec.test_splits))}.")
        ensure_data(spec, config.data_root)
        dataset = build_dataset(spec.name, split, config.data_root, config.image_size, train=False)
    device = resolve_device(device)
    return evaluate_model(model.to(device), dataset, spec, batch_size=config.batch_size, device=device,
                          desc=f"eval {split}")
