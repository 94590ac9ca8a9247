"""Training presets: named bundles of settings for the four ways this kit is run.

A preset fills in what a :class:`~convlora_lite.train.TrainConfig` does not say explicitly
(explicit values always win). A field left ``None`` here falls back to the dataset's official
recipe (``epochs``, ``lr`` from the registry) or to the model's native input size
(``image_size``).

========  ===========================================================================
preset    what it is for
========  ===========================================================================
smoke     CI and "does it run at all": the bundled ``micro_sam`` at its native 256 px,
          one epoch of a few batches. Seconds on a CPU. The numbers mean nothing.
cpu       The offline default, for learning and the notebooks: ``micro_sam`` (256 px)
          on a ``synth_<task>`` analog, 8 epochs of batch 4. Minutes on a laptop CPU
          (Conv-LoRA on synth_polyp: about 5 s per epoch, 50 s per run, on a 2-core CPU).
colab     SAM ViT-B at 1024 px on one 16 GB GPU (a free Colab T4): fp16, activation
          checkpointing, batch 1 x gradient accumulation 4, the official epochs and lr.
          Pass ``--image-size 512`` to run about four times faster.
paper     The official recipe (REFERENCE.md, "Training recipe"): SAM ViT-H at 1024 px,
          the registry's per-dataset epochs and lr, batch 1 x accumulation 4, fp16,
          seed 42686693. Needs a large GPU (or several, through ``accelerate launch``).
========  ===========================================================================

``smoke`` and ``cpu`` differ from the official recipe on purpose: lr 1e-3 instead of the
registry's 1e-4/3e-4 (chosen so that a handful of epochs shows progress; not tuned), fp32
on a CPU, and a batch of 2-4 without accumulation. Everything else (optimizer, schedule,
clipping, loss, selection) is the official one in every preset.
"""
from __future__ import annotations

from dataclasses import dataclass

from .errors import ConfigError

#: the official seed (AutoGluon's Conv-LoRA example).
OFFICIAL_SEED = 42686693


@dataclass(frozen=True)
class Preset:
    """A named bundle of training settings (see the module docstring for each preset's purpose).

    ``None`` in ``image_size`` means the model's native size; in ``epochs`` and ``lr`` the
    dataset's official recipe; in ``max_train_batches``/``max_eval_batches`` every batch; in
    ``early_stopping_patience`` no early stopping.
    """

    name: str
    purpose: str
    model: str
    image_size: int | None
    epochs: int | None
    lr: float | None
    batch_size: int
    grad_accum: int
    precision: str
    activation_checkpointing: bool
    max_train_batches: int | None = None
    max_eval_batches: int | None = None
    early_stopping_patience: int | None = None
    seed: int = OFFICIAL_SEED
    num_workers: int = 0


def _presets() -> dict[str, Preset]:
    return {
        "smoke": Preset(
            "smoke", "CI: seconds on a CPU, proves the pipeline runs end to end", model="micro_sam",
            image_size=None, epochs=1, lr=1e-3, batch_size=2, grad_accum=1, precision="auto",
            activation_checkpointing=False, max_train_batches=3, max_eval_batches=2, num_workers=0),
        "cpu": Preset(
            "cpu", "offline default: micro_sam on a synth_<task> analog, minutes on a CPU", model="micro_sam",
            image_size=None, epochs=8, lr=1e-3, batch_size=4, grad_accum=1, precision="auto",
            activation_checkpointing=False, num_workers=0),
        "colab": Preset(
            "colab", "SAM ViT-B on one 16 GB GPU (Colab T4)", model="vit_b", image_size=1024,
            epochs=None, lr=None, batch_size=1, grad_accum=4, precision="fp16",
            activation_checkpointing=True, num_workers=2),
        "paper": Preset(
            "paper", "the official recipe on SAM ViT-H", model="vit_h", image_size=1024, epochs=None, lr=None,
            batch_size=1, grad_accum=4, precision="fp16", activation_checkpointing=False, num_workers=4),
    }


#: preset names, in order of cost.
PRESET_NAMES = ("smoke", "cpu", "colab", "paper")


def get_preset(name: str) -> Preset:
    """The preset called ``name``; a :class:`ConfigError` listing the names for an unknown one."""
    presets = _presets()
    if name not in presets:
        raise ConfigError(f"Unknown preset {name!r}. Choose one of: {', '.join(PRESET_NAMES)}.")
    return presets[name]
