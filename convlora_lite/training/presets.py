"""Training presets: named overrides of :class:`~convlora_lite.training.config.TrainConfig`.

A preset is a name, a purpose and the :class:`TrainConfig` fields it sets. Resolution order (in
:meth:`TrainConfig.resolve`): the dataset's official recipe (``epochs``, ``lr``, see
``docs/recipe.md``), then the preset's overrides, then what the caller passes explicitly. A field a
preset leaves out keeps the recipe's value (``epochs``, ``lr``), the model's native input size
(``image_size``) or the ``TrainConfig`` default.

========  ===========================================================================
preset    what it is for
========  ===========================================================================
smoke     CI and "does it run at all": the bundled ``micro_sam`` at its native 256 px,
          one epoch of a few batches. Seconds on a CPU. The numbers mean nothing.
cpu       The offline default, for learning and the notebooks: ``micro_sam`` (256 px)
          on a ``synth_<task>`` analog, 4 epochs of batch 4 at lr 2e-3, sized so that ``make run``
          fits its time limit on 2 CPU cores (measured: ``benchmarks/cpu_schedule_cpu.md``);
          the multi-class head's mask tokens start apart and synth_trans10k trains 12 epochs
          (``benchmarks/analogs_cpu.md``).
colab     SAM ViT-B at 512 px (position tables resized) on one 16 GB GPU (a free Colab T4),
          sized so a notebook finishes in a session: fp16 (``precision="auto"``: fp16 on a
          GPU, fp32 when a test runs it on the CPU), batch 1 x gradient accumulation 4, the
          official lr, 8 epochs of at most 1000 batches, 1 seed, sized so a domain notebook
          fits a Colab session (the estimate: ``benchmarks/colab_budget.md``); no activation
          checkpointing: at 512 px the activations are small (1.6 GiB fp32 peak, measured), and
          the step is bound by the host, which checkpointing would make dispatch the encoder
          twice (``docs/performance.md``).
paper     The official recipe (``docs/recipe.md``): SAM ViT-H at 1024 px, the registry's
          per-dataset epochs and lr, batch 1 x accumulation 4, fp16, seed 42686693, 3 seeds.
========  ===========================================================================

``smoke`` and ``cpu`` differ from the official recipe on purpose: a larger lr than the registry's
1e-4/3e-4 (``smoke`` 1e-3, not tuned; ``cpu`` 2e-3, better than 1e-3 on most analogs' validation
splits at 4 epochs, while 3e-3 collapsed on synth_road: ``benchmarks/cpu_schedule_cpu.md``), fp32 on a CPU, and
a batch of 2-4 without accumulation (the benchmarks measured with an earlier ``cpu`` schedule say so and give
the flags that reproduce it). Everything else (optimizer, schedule, clipping, loss, selection) is the official one
in every preset, and so is Meta's attention code (``attention="sdpa"`` is an option: ``docs/performance.md``).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Mapping

from convlora_lite.errors import ConfigError

#: the preset a run, a sweep and a notebook use when none is named: the offline default.
DEFAULT_PRESET = "cpu"
#: the official seed (AutoGluon's Conv-LoRA example).
OFFICIAL_SEED = 42686693
#: the ``colab`` preset's schedule: 8 epochs of at most 1000 batches (a fresh random subset of a
#: larger training set every epoch); its estimated time per run on a T4 is in ``benchmarks/colab_budget.md``.
COLAB_EPOCHS = 8
COLAB_MAX_TRAIN_BATCHES = 1000
#: the ``cpu`` preset's multi-class head: noise of one standard deviation of SAM's mask token 0 on each of its
#: copies (identical copies predict identical masks, and 64 steps do not break the tie), and 12 epochs on the
#: 11-class synth_trans10k, which learns no class in 4 (``benchmarks/analogs_cpu.md``).
CPU_QUERY_JITTER = 1.0
CPU_MULTICLASS_EPOCHS = 12


@dataclass(frozen=True)
class Preset:
    """A named set of :class:`~convlora_lite.training.config.TrainConfig` overrides."""

    name: str
    purpose: str
    overrides: Mapping[str, Any] = field(default_factory=dict)
    #: how many seeds a sweep or a notebook trains by default (the paper reports the mean of 3).
    seeds: int = 1
    #: offline: the bundled micro SAM on the ``synth_<task>`` analogs, nothing downloaded.
    offline: bool = False
    #: the ``generate_synthetic`` sizes of the analogs this preset trains on (empty: the library's own).
    synthetic_sizes: Mapping[str, int] = field(default_factory=dict)
    #: a subfolder of the data root for this preset's analogs (smoke's tiny ones never replace the others).
    data_subfolder: str = ""
    #: dataset -> the overrides that dataset takes on top of :attr:`overrides` (explicit settings still win).
    dataset_overrides: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    #: the SAM 2.1 backbone that stands for SAM 2 at this preset (notebook 13): the bundled micro SAM 2 offline,
    #: Hiera-S at paper scale (it fits a free Colab GPU; ``docs/sam2.md``).
    sam2_model: str = "sam2.1_hiera_small"

    def overrides_for(self, dataset: str | None) -> dict:
        """What this preset sets on a run of ``dataset``: :attr:`overrides`, then the dataset's own."""
        return {**self.overrides, **self.dataset_overrides.get(dataset, {})}

    def dataset(self, task: str) -> str:
        """The dataset a paper task trains on under this preset: its ``synth_`` analog offline, else itself."""
        return f"synth_{task}" if self.offline else task


PRESETS: Mapping[str, Preset] = MappingProxyType({preset.name: preset for preset in (
    Preset("smoke", "CI: seconds on a CPU, proves the pipeline runs end to end", dict(
        model="micro_sam", epochs=1, lr=1e-3, batch_size=2, max_train_batches=3, max_eval_batches=2),
        offline=True, synthetic_sizes=dict(n_train=4, n_val=2, n_test=2, image_size=64), data_subfolder="smoke",
        sam2_model="micro_sam2"),
    Preset("cpu", "offline default: micro_sam on a synth_<task> analog, minutes on a CPU", dict(
        model="micro_sam", epochs=4, lr=2e-3, batch_size=4, query_jitter=CPU_QUERY_JITTER), offline=True,
        dataset_overrides={"synth_trans10k": {"epochs": CPU_MULTICLASS_EPOCHS}}, sam2_model="micro_sam2"),
    Preset("colab", "SAM ViT-B at 512 px sized for one Colab T4 session (about an hour per notebook)", dict(
        model="vit_b", image_size=512, epochs=COLAB_EPOCHS, max_train_batches=COLAB_MAX_TRAIN_BATCHES, grad_accum=4,
        precision="auto", num_workers=2)),
    Preset("paper", "the official recipe on SAM ViT-H", dict(
        model="vit_h", image_size=1024, grad_accum=4, precision="fp16", num_workers=4), seeds=3),
)})

#: preset names, in order of cost.
PRESET_NAMES = tuple(PRESETS)


def sam2_backbone(preset: str, name: str = "auto") -> str:
    """The SAM 2 backbone a notebook trains: ``name`` when it is one (``micro_sam2`` or ``sam2.1_hiera_*``), the
    preset's :attr:`Preset.sam2_model` for ``"auto"``; a :class:`ConfigError` naming the choices otherwise.
    Used in notebook 13."""
    from convlora_lite.models.configs import MODEL_CONFIGS

    if name == "auto":
        return get_preset(preset).sam2_model
    choices = [n for n, cfg in MODEL_CONFIGS.items() if cfg.backbone == "hiera"]
    if name not in choices:
        raise ConfigError(f"SAM2_MODEL={name!r} is not a SAM 2 backbone; choose auto or one of {', '.join(choices)}.")
    return name


def get_preset(name: str) -> Preset:
    """The preset called ``name``; a :class:`ConfigError` listing the names for an unknown one."""
    if name not in PRESETS:
        raise ConfigError(f"Unknown preset {name!r}. Choose one of: {', '.join(PRESET_NAMES)}.")
    return PRESETS[name]
