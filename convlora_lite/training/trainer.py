"""The training loop: official Conv-LoRA recipe, one run directory per run, resumable.

``fit(config)`` trains a SAM segmenter with a PEFT method on a registry dataset or your own data
(:mod:`convlora_lite.training.run_data`) and returns the run directory (:mod:`convlora_lite.training.rundir`).

The recipe (``docs/recipe.md``, "Training recipe") is the default: AdamW and the linear decay of
:mod:`convlora_lite.training.optim`; gradient clipping at norm 1.0; the run's precision
(:mod:`convlora_lite.training.devices`: fp16 with a loss scaler or bf16 on a GPU); batch ``batch_size`` per
process, ``grad_accum`` batches per optimizer step (the last group of an epoch may be shorter; its loss is
averaged over the batches it has, a true mean, where Lightning divides by ``grad_accum`` regardless); loss =
task loss + the adapters' auxiliary loss (weight 1); validation every epoch, the best checkpoint by the
dataset's ``select_metric``/``select_mode``, optional early stopping, the test splits scored with the best
weights. What the run directory holds (:func:`~convlora_lite.training.resume.previous_state`) decides whether
a run starts, resumes or is done.

Multi-process (``accelerate launch`` or ``torchrun``): data parallel through Hugging Face
Accelerate; each process trains on its shard of every epoch's permutation, gradients are averaged;
validation and testing run on the main process only (the others wait), which alone writes the run
directory. Data order does not depend on the RNG state: epoch ``e`` uses the permutation seeded by
``(seed, e)``, which is what makes ``resume`` end exactly where an uninterrupted run ends.
"""
from __future__ import annotations

import dataclasses
import math
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Callable, Optional

import torch
from torch.utils.data import DataLoader, Subset
from tqdm.auto import tqdm  # tqdm.write keeps log lines clear of a live bar

from convlora_lite.errors import DataError
from convlora_lite.io import jsonable
from convlora_lite.locking import exclusive
from convlora_lite.models.prompts import batch_names, train_prompts
from convlora_lite.peft.state import load_trainable, trainable_state
from convlora_lite.progress import format_duration, progress_bar
from convlora_lite.training import devices
from convlora_lite.training.compile import compile_model
from convlora_lite.training.config import TrainConfig
from convlora_lite.training.evaluation import evaluate_model, zero_shot_baseline
from convlora_lite.training.losses import task_loss
from convlora_lite.training.model import build_model
from convlora_lite.training.optim import build_optimizer, clip_gradients, linear_decay
from convlora_lite.training.resume import previous_state, rng_state, set_rng_state
from convlora_lite.training.run_data import config_spec, run_datasets
from convlora_lite.training.rundir import RunDir
from convlora_lite.training.tracking import RunTracker

#: the duration estimate is printed after this many timed batches (the first one is not timed).
ESTIMATE_AFTER_BATCHES = 5
#: with ``num_workers=0``, each split keeps up to this many bytes of decoded samples in memory, so
#: epochs after the first skip the decoding (a ``cpu`` run's analog fits: 80 MiB for its 64 training and
#: 16 validation images at 256 px; see ``benchmarks/README.md``, "Data decoding").
DATA_CACHE_BYTES = 512 * 2**20


def _scalars(metrics: dict) -> dict:
    return {k: float(v) for k, v in metrics.items() if isinstance(v, (int, float))}


class Trainer:
    """Runs the loop of one run with the parts it is handed: the run directory, resume and saving.
    :func:`fit` builds the parts: ``Trainer(config, spec).setup(model, datasets).fit()``.

    Args:
        config: a resolved :class:`TrainConfig`.
        spec: the dataset's spec; any object with ``task``, ``classes``, ``loss``, ``select_metric``,
            ``select_mode`` and ``test_splits`` works.
        on_epoch_end: called as ``on_epoch_end(epoch, history_row)`` after each epoch has been
            saved (an exception raised there interrupts the run like a crash would).
        on_finish: called as ``on_finish(run, spec)`` (a :class:`RunDir`) once ``metrics.json`` is
            written, e.g. :func:`convlora_lite.plots.figures.save_loss_curve`.
        log: where the run's lines go (main process; default ``tqdm.write``, clear of a live bar).

    Constructing it reads what the run directory already holds (:attr:`completed`: nothing to do).
    """

    def __init__(self, config: TrainConfig, spec, *, on_epoch_end: Optional[Callable[[int, dict], None]] = None,
                 on_finish: Optional[Callable] = None, log: Optional[Callable[[str], None]] = None) -> None:
        config.validate()
        self.config = config
        self.spec = spec
        self.device = devices.resolve_device(config.device)
        self.precision = devices.resolve_precision(config.precision, self.device, config.model)
        self.accelerator = devices.make_accelerator(self.device)
        self.scaler = devices.grad_scaler(self.device, self.precision)
        self.is_main = self.accelerator.is_main_process
        self.run = RunDir(config.output_dir or "run")
        self.on_epoch_end, self.on_finish = on_epoch_end, on_finish
        self._write = log or tqdm.write
        self._estimated = False
        self.state = previous_state(config, self.run, self.log)

    @property
    def completed(self) -> bool:
        """Whether the run directory holds this run, finished: :meth:`fit` has nothing to do."""
        return bool(self.state.get("completed"))

    def setup(self, model, datasets: dict) -> "Trainer":
        """Hand the trainer its model (PEFT applied, on the CPU) and ``datasets`` (``{"train", "val",
        *test splits}`` -> Dataset of ``dict(image=(3,S,S) float, mask=(S,S), name=str)``); builds the loss,
        the optimizer and the schedule, and restores a run being resumed. Returns the trainer."""
        config = self.config
        missing = {"train", "val"} - set(datasets)
        if missing:
            raise DataError(f"datasets lacks the split(s) {sorted(missing)}; give at least train and val.")
        empty = [split for split, data in datasets.items() if len(data) == 0]
        if empty:
            raise DataError(f"The split(s) {empty} of {config.dataset} hold no images; check the dataset's files.")
        self.datasets = datasets
        self.loss_fn = task_loss(self.spec, config.num_classes)
        optimizer = build_optimizer(model, config.lr, config.weight_decay, self.accelerator.device)
        self.steps_per_epoch = math.ceil(self._batches_per_epoch() / config.grad_accum)
        self.scheduler = linear_decay(optimizer, config.epochs * self.steps_per_epoch)
        self.model, self.optimizer = self.accelerator.prepare(model, optimizer)
        self.forward = compile_model(self.model, config.compile, self.accelerator.device, self.log)
        if "resume" in self.state:
            self._load_resume_state(self.state["resume"])
        return self

    # ---- the run directory ----------------------------------------------------------------

    def log(self, message: str) -> None:
        if self.is_main:
            self._write(message)

    def _save_epoch(self, history: list[dict], best: dict, improved: bool, patience_left, stopped: bool,
                    rng_states: list) -> None:
        model = self.accelerator.unwrap_model(self.model)
        weights = trainable_state(model)
        self.run.save_tensors(self.run.last, weights)
        if improved:
            self.run.save_tensors(self.run.best, weights)
        self.run.write_history(history)
        scaler = self.scaler
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
        if state["scaler"] is not None and self.scaler is not None:
            self.scaler.load_state_dict(state["scaler"])
        rank = self.accelerator.process_index
        if state["world_size"] == self.accelerator.num_processes:
            set_rng_state(state["rng"][rank])
        else:
            self.log(f"Resuming with {self.accelerator.num_processes} processes instead of {state['world_size']}: "
                     "the random streams differ from an uninterrupted run.")
            set_rng_state(state["rng"][0])
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
        bar = progress_bar(total=num_batches, desc=f"epoch {epoch + 1}/{cfg.epochs}", disable=not self.is_main)
        started, untimed = time.perf_counter(), 1 if self.forward is self.model else 2
        for i, batch in enumerate(self._train_loader(epoch)):
            if i == num_batches:
                break
            if i == untimed:  # the first batch (warm-up, allocation, loader start), and the compiling one, untimed
                started = time.perf_counter()
            group_start = i - i % cfg.grad_accum
            group_size = min(cfg.grad_accum, num_batches - group_start)
            step_now = i + 1 == group_start + group_size
            lr = self.optimizer.param_groups[0]["lr"] if step_now else lr
            task_loss, aux_loss = self.step(batch, i * cfg.batch_size, epoch, group_size, step_now)
            sums += torch.stack([task_loss, aux_loss, torch.ones((), device=acc.device)])
            bar.update(1)
            bar.set_postfix(loss=f"{task_loss.item():.4f}")  # .item() waits for the device: the timing is true
            if not self._estimated and i == min(num_batches - 1, ESTIMATE_AFTER_BATCHES + untimed - 1):
                self._estimated = True
                self._log_estimate(epoch, (time.perf_counter() - started) / max(i - untimed + 1, 1), num_batches)
        bar.close()
        sums = acc.reduce(sums, reduction="sum")
        return {"train_loss": (sums[0] / sums[2]).item(), "aux_loss": (sums[1] / sums[2]).item(), "lr": lr}

    def step(self, batch: dict, first: int = 0, epoch: int = 0, group_size: int = 1, step_now: bool = True):
        """One batch of the loop (also what ``convlora bench`` and the GPU check time): forward and loss under
        the run's autocast, the (scaled) backward of ``loss / group_size``, and when ``step_now`` the optimizer
        step and the schedule (:meth:`optimizer_step`). ``first``: the batch's first item index (prompts are
        seeded per item and epoch). Returns the task and auxiliary losses, detached float32 0-dim tensors."""
        cfg, acc = self.config, self.accelerator
        inputs, masks = [batch["image"].to(acc.device)], batch["mask"].to(acc.device)
        if cfg.prompt != "none":
            names = batch_names(batch, first)
            inputs.append(train_prompts(batch["mask"], names, cfg.prompt, cfg.seed, epoch).to(acc.device))
        with nullcontext() if step_now else acc.no_sync(self.model):
            with self.autocast():
                out = self.forward(*inputs)  # self.model, or it compiled (--compile)
                task_loss = self.loss_fn(out, masks)
                loss = (task_loss + out.aux_loss) / group_size
            acc.backward(loss if self.scaler is None else self.scaler.scale(loss))
        if step_now:
            if self.optimizer_step(cfg.max_grad_norm):
                self.scheduler.step()
            self.optimizer.zero_grad(set_to_none=True)
        return task_loss.detach().float(), out.aux_loss.detach().float()

    def autocast(self):
        """The context of every forward pass of this run's model (:func:`~convlora_lite.training.devices.autocast`
        of its device and precision), training and evaluation alike."""
        return devices.autocast(self.device, self.precision)

    def optimizer_step(self, max_grad_norm: Optional[float]) -> bool:
        """Unscale (fp16), clip at ``max_grad_norm`` and step; returns False when the fp16 scaler skipped
        the step because a gradient overflowed (the learning-rate schedule then waits, as Accelerate's
        ``optimizer_step_was_skipped`` has it)."""
        if self.scaler is None:
            if max_grad_norm is not None:
                clip_gradients(self.model, max_grad_norm)
            self.optimizer.step()
            return True
        self.scaler.unscale_(self.optimizer)
        if max_grad_norm is not None:
            clip_gradients(self.model, max_grad_norm)
        scale = self.scaler.get_scale()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        return self.scaler.get_scale() >= scale

    def _log_size(self, first_epoch: int) -> None:
        """One line: the run's size (images, batches, epochs, optimizer steps), before it starts."""
        cfg = self.config
        n = len(self.datasets["train"])
        batches = self._batches_per_epoch()
        capped = f" (at most {cfg.max_train_batches} per epoch)" if cfg.max_train_batches is not None else ""
        left = f", resuming at epoch {first_epoch + 1}" if first_epoch else ""
        world = f" on each of {self.accelerator.num_processes} processes" if self.accelerator.num_processes > 1 else ""
        self.log(f"{cfg.dataset} / {cfg.method} / seed {cfg.seed}: {n:,} training images, {batches:,} batches of "
                 f"{cfg.batch_size}{capped}{world} x {cfg.epochs} epochs = {cfg.epochs * self.steps_per_epoch:,} "
                 f"optimizer steps (accumulation {cfg.grad_accum}); {cfg.model} at {cfg.image_size} px, "
                 f"{self.precision} on {self.device}{left}.")

    def _log_estimate(self, epoch: int, per_batch_s: float, num_batches: int) -> None:
        """One line, after the first batches: the estimated duration of the training left."""
        left = per_batch_s * num_batches * (self.config.epochs - epoch)
        self.log(f"Estimated training time: {format_duration(left)} ({per_batch_s:.3g} s per batch of the first "
                 f"{min(num_batches, ESTIMATE_AFTER_BATCHES + 1)}; validation and testing come on top).")

    def _score(self, split: str) -> dict:
        """The task's metrics of the current weights on ``split`` (main process), with the task loss on val."""
        return evaluate_model(self.accelerator.unwrap_model(self.model), self.datasets[split], self.spec,
                              batch_size=self.config.batch_size, device=self.accelerator.device,
                              max_batches=self.config.max_eval_batches, autocast=self.autocast,
                              desc=f"eval {split}", loss_fn=self.loss_fn if split == "val" else None)

    def _better(self, value: float, best: Optional[float]) -> bool:
        return best is None or (value > best if self.spec.select_mode == "max" else value < best)

    def fit(self) -> Path:
        """Train (or continue) the run; returns the run directory."""
        from accelerate.utils import broadcast_object_list, gather_object

        cfg, acc, run = self.config, self.accelerator, self.run
        if self.completed:
            return run.path
        resume = self.state.get("resume", {})
        history = list(resume.get("history", []))
        best = resume.get("best", {"epoch": None, "value": None, "val": None})
        patience_left = resume.get("patience_left", cfg.early_stopping_patience)
        stopped = resume.get("stopped_early", False)
        if self.is_main:
            run.create()
            run.write_config(dataclasses.replace(cfg, resume=False).to_dict())
        if len(history) < cfg.epochs and not stopped:
            self._log_size(len(history))
        for epoch in range(len(history), cfg.epochs):
            if stopped:
                break
            start = time.perf_counter()
            row = {"epoch": epoch + 1, **self.train_epoch(epoch)}
            improved = False
            if self.is_main:
                val = self._score("val")
                row.update({f"val_{k}": v for k, v in _scalars(val).items()})
                value = float(val[self.spec.select_metric])
                improved = self._better(value, best["value"])
                if improved:
                    best = {"epoch": epoch + 1, "value": value, "val": jsonable(val)}
                    patience_left = cfg.early_stopping_patience
                elif patience_left is not None:
                    patience_left -= 1
                stopped = patience_left is not None and patience_left <= 0 and epoch + 1 < cfg.epochs
            row["time_s"] = round(time.perf_counter() - start, 3)
            history.append(row)
            rng_states = gather_object([rng_state()])
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
        validation; :func:`~convlora_lite.training.evaluation.evaluate` scores a whole split); write
        metrics.json (with the test pass's seconds, the device's name and the processes) and the figure. A
        prompted run also scores the zero-shot promptable SAM with the same prompts (``zero_shot``, beside ``test``)."""
        model = self.accelerator.unwrap_model(self.model)
        load_trainable(model, self.run.load_tensors(self.run.best), str(self.run.best))
        tests = [s for s in self.datasets if s not in ("train", "val")]
        started = time.perf_counter()
        test = {split: jsonable(self._score(split)) for split in tests}
        metrics = {
            "dataset": self.config.dataset, "method": self.config.method, "model": self.config.model,
            "seed": self.config.seed, "select_metric": self.spec.select_metric, "select_mode": self.spec.select_mode,
            "best_epoch": best["epoch"], "epochs_run": len(history), "stopped_early": stopped,
            "val": best["val"], "test": test, "max_eval_batches": self.config.max_eval_batches, "completed": True,
            "test_s": round(time.perf_counter() - started, 3), "device": devices.device_name(self.device),
            "processes": self.accelerator.num_processes,
        }
        if self.config.prompt != "none":
            zero_shot = {split: jsonable(zero_shot_baseline(
                self.config, self.datasets[split], self.spec, device=self.accelerator.device,
                max_batches=self.config.max_eval_batches, autocast=self.autocast,
                desc=f"zero-shot {split}")) for split in tests}
            metrics = {**metrics, "prompt": self.config.prompt, "zero_shot": zero_shot}
        self.run.write_metrics(metrics)
        if self.on_finish is not None:
            self.on_finish(self.run, self.spec)


# --------------------------------------------------------------------------------------------
# public entry points


def fit(config: TrainConfig, *, spec=None, datasets: Optional[dict] = None, on_epoch_end: Optional[Callable] = None,
        on_finish: Optional[Callable] = None, log: Optional[Callable[[str], None]] = None) -> Path:
    """Train ``config``; returns the run directory. The composition root: the spec (default
    :func:`~convlora_lite.training.run_data.config_spec`), the data (default
    :func:`~convlora_lite.training.run_data.run_datasets`: installed, or an own-data split recorded in the
    run), the model (:func:`~convlora_lite.training.model.build_model`, seeded), the run's TensorBoard files
    and trackers (:class:`~convlora_lite.training.tracking.RunTracker`, before ``on_epoch_end`` and
    ``on_finish``) and a :class:`Trainer` that runs the loop with them. A finished run is returned at once,
    before any data or weights are touched. One process at a time trains a run directory
    (:func:`~convlora_lite.locking.exclusive`): a second one waits, then finds the run finished (or resumes). ``log``:
    as :class:`Trainer`'s."""
    from accelerate.utils import set_seed

    with exclusive(config.output_dir or "run", log=log or tqdm.write):
        spec = spec if spec is not None else config_spec(config)
        tracker = RunTracker(RunDir(config.output_dir or "run"), config)
        trainer = Trainer(config, spec, on_epoch_end=tracker.epoch_hook(on_epoch_end),
                          on_finish=tracker.finish_hook(on_finish), log=log)
        if trainer.completed:
            return trainer.run.path
        if datasets is None:
            with trainer.accelerator.main_process_first():  # the main process installs or records first
                cache = DATA_CACHE_BYTES if config.num_workers == 0 else 0  # a worker's copy dies with it
                datasets = run_datasets(config, spec, trainer.run, cache_bytes=cache, log=trainer.log)
        set_seed(config.seed)
        return trainer.setup(build_model(config), datasets).fit()
