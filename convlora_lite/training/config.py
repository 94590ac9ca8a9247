"""The configuration of one training run, :class:`TrainConfig`, and how it is resolved.

The recipe behind the defaults is in ``docs/recipe.md``; the presets that override them are in
:mod:`convlora_lite.training.presets`.
"""
from __future__ import annotations

import dataclasses
from dataclasses import asdict, dataclass, field
from typing import Any, Optional

from convlora_lite.errors import ConfigError
from convlora_lite.io import jsonable
from convlora_lite.models.configs import get_config, sized_config
from convlora_lite.models.prompts import check_prompt
from convlora_lite.models.sdpa_attention import ATTENTIONS
from convlora_lite.training.compile import COMPILE_MODES
from convlora_lite.training.presets import DEFAULT_PRESET, OFFICIAL_SEED, get_preset
from convlora_lite.training.rundir import RunDir

PRECISIONS = ("auto", "fp32", "fp16", "bf16")
DEVICES = ("auto", "cuda", "mps", "cpu")
#: config fields that may change between a run and its resume (where the run and the data lie,
#: how they are loaded, how the same arithmetic is computed); any other difference is a ConfigError.
RESUME_FREE_FIELDS = ("resume", "num_workers", "output_dir", "data_root", "compile", "attention", "log_with")
#: the experiment trackers a run may log to besides its TensorBoard files (through Accelerate's trackers).
TRACKERS = ("wandb", "mlflow")


@dataclass
class TrainConfig:
    """Everything that defines a run; written to ``config.json`` (enough to rerun it).

    Build one with :meth:`resolve` (dataset recipe + preset + explicit overrides). Fields:
    ``checkpoint`` is what :func:`~convlora_lite.models.sam.build_sam` loads (``"auto"``: official or
    bundled weights; ``None``: random); ``num_classes`` is 1 for binary tasks, else K with the
    background; ``query_jitter`` (multi-class only) starts the mask tokens apart, in units of SAM's token 0's
    standard deviation (0: identical copies, the official head; :mod:`convlora_lite.models.segmenter`);
    ``max_grad_norm=None`` disables clipping; ``early_stopping_patience=None`` disables
    early stopping; ``max_train_batches``/``max_eval_batches`` cap the batches per epoch/evaluation
    (``None``: all); ``method_options`` are the PEFT method's options (its defaults included);
    ``prompt`` is ``"none"`` (prompt-free, the paper) or, beyond the paper, ``"box"``/``"point"``:
    SAM kept promptable, trained and scored with prompts sampled from the masks
    (:mod:`convlora_lite.models.prompts`; binary tasks only); ``compile`` is a ``torch.compile`` mode for the
    training step (:mod:`convlora_lite.training.compile`) or None (eager); ``attention`` computes the encoder's
    attention as Meta does (``"meta"``) or through ``scaled_dot_product_attention`` without the attention
    matrix (``"sdpa"``, :mod:`convlora_lite.models.sdpa_attention`), the same arithmetic; ``log_with`` names the
    trackers (:data:`TRACKERS`) a run logs to besides the TensorBoard files it always writes
    (:mod:`convlora_lite.training.tracking`).
    """

    dataset: str
    method: str
    preset: str = DEFAULT_PRESET
    model: str = "micro_sam"
    checkpoint: Optional[str] = "auto"
    seed: int = OFFICIAL_SEED
    output_dir: Optional[str] = None
    data_root: str = "data"
    image_size: int = 256
    num_classes: int = 1
    query_jitter: float = 0.0
    epochs: int = 1
    lr: float = 1e-4
    batch_size: int = 1
    grad_accum: int = 1
    weight_decay: float = 1e-4
    max_grad_norm: Optional[float] = 1.0
    precision: str = "auto"
    activation_checkpointing: bool = False
    compile: Optional[str] = None
    attention: str = "meta"
    device: str = "auto"
    early_stopping_patience: Optional[int] = None
    max_train_batches: Optional[int] = None
    max_eval_batches: Optional[int] = None
    num_workers: int = 0
    method_options: dict = field(default_factory=dict)
    prompt: str = "none"
    resume: bool = False
    data_dir: Optional[str] = None
    task: Optional[str] = None
    loss: Optional[str] = None
    select_metric: Optional[str] = None
    log_with: list = field(default_factory=list)

    @classmethod
    def resolve(cls, dataset: Optional[str], method: str, preset: str = DEFAULT_PRESET, *, spec=None,
                **overrides) -> "TrainConfig":
        """The config of ``method`` on ``dataset`` under ``preset``; explicit ``overrides`` win.

        Own data: ``dataset=None`` (or a label) and ``data_dir=PATH`` (made absolute); the spec is
        :func:`convlora_lite.data.own.own_spec` of it.

        Order: the dataset's official recipe (``epochs``, ``lr``), then the preset's overrides (with those it sets
        for this dataset, :meth:`~convlora_lite.training.presets.Preset.overrides_for`), then ``overrides``
        (``image_size=None`` means the model's native size; ``checkpoint=None`` random weights). ``spec`` is the
        dataset's :class:`~convlora_lite.data.registry.DatasetSpec` (default: the registry's entry).
        """
        from convlora_lite.peft import get_method
        from convlora_lite.training.run_data import dataset_spec

        fields = [f.name for f in dataclasses.fields(cls)]
        unknown = set(overrides) - set(fields)
        if unknown:
            raise ConfigError(f"Unknown training option(s) {sorted(unknown)}; TrainConfig takes {fields}.")
        if overrides.get("data_dir"):
            from pathlib import Path

            overrides["data_dir"] = str(Path(overrides["data_dir"]).expanduser().resolve())
            if spec is None:
                spec = dataset_spec(dataset, data_dir=overrides["data_dir"], task=overrides.get("task"),
                                    loss=overrides.get("loss"), select_metric=overrides.get("select_metric"))
            dataset = dataset or spec.name
            overrides["task"] = spec.task
        elif dataset is None:
            raise ConfigError("Name a dataset (a registry name) or give data_dir (a folder, CSV or COCO JSON of "
                              "your own).")
        if spec is None:
            spec = dataset_spec(dataset, loss=overrides.get("loss"), select_metric=overrides.get("select_metric"))
        values = dict(num_classes=1 if spec.task == "binary" else len(spec.classes), epochs=spec.epochs, lr=spec.lr)
        values.update(get_preset(preset).overrides_for(dataset))
        values.update(overrides, dataset=dataset, method=method, preset=preset)
        values.setdefault("output_dir", str(RunDir.of("runs", dataset, method, values.get("seed", OFFICIAL_SEED)).path))
        values["image_size"] = run_image_size(preset, overrides)
        values["method_options"] = get_method(method).options(**(overrides.get("method_options") or {}))
        config = cls(**values)
        config.validate()
        return config

    def validate(self) -> None:
        """Raise :class:`ConfigError` for a value no run can use."""

        if self.precision not in PRECISIONS:
            raise ConfigError(f"precision={self.precision!r}; choose one of {', '.join(PRECISIONS)}.")
        if self.compile is not None and self.compile not in COMPILE_MODES:
            raise ConfigError(f"compile={self.compile!r}; choose one of {', '.join(COMPILE_MODES)} (or leave it out).")
        if self.attention not in ATTENTIONS:
            raise ConfigError(f"attention={self.attention!r}; choose one of {', '.join(ATTENTIONS)}.")
        if self.device not in DEVICES:
            raise ConfigError(f"device={self.device!r}; choose one of {', '.join(DEVICES)}.")
        for name in ("epochs", "batch_size", "grad_accum", "image_size"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise ConfigError(f"{name}={getattr(self, name)!r} must be a positive integer.")
        sized_config(get_config(self.model), self.image_size)  # a multiple of the patch size (32 for SAM 2.1)
        if not isinstance(self.lr, (int, float)) or self.lr <= 0:
            raise ConfigError(f"lr={self.lr} must be positive.")
        if not isinstance(self.query_jitter, (int, float)) or self.query_jitter < 0:
            raise ConfigError(f"query_jitter={self.query_jitter!r} must be a number >= 0 (0: the official head).")
        if not isinstance(self.log_with, list) or any(name not in TRACKERS for name in self.log_with):
            raise ConfigError(f"log_with={self.log_with!r}: name trackers among {', '.join(TRACKERS)} (TensorBoard "
                              "files are always written).")
        check_prompt(self.prompt)
        if self.prompt != "none" and self.num_classes != 1:
            raise ConfigError(f"prompt={self.prompt!r} is for binary tasks: {self.dataset} has {self.num_classes} "
                              "classes, and one box or point cannot say which class to segment. Use prompt='none' "
                              "(prompt-free, as the paper) for multi-class tasks.")

    def to_dict(self) -> dict:
        """The fields as plain JSON types (what ``config.json`` holds)."""
        return jsonable(asdict(self))

    @classmethod
    def from_dict(cls, data: dict) -> "TrainConfig":
        return cls(**data)

    @classmethod
    def of_run(cls, run_dir) -> "TrainConfig":
        """The config of the run in ``run_dir`` (its ``config.json``)."""
        return cls.from_dict(RunDir(run_dir).read_config_dict())

    def changed_fields(self, stored: dict) -> list[str]:
        """The fields (other than :data:`RESUME_FREE_FIELDS`) whose value differs from ``stored``,
        a run's ``config.json`` (a field it lacks, written before the field existed, counts as
        its default)."""
        current, stored = self.to_dict(), self.with_defaults(stored)
        return sorted(k for k in current if k not in RESUME_FREE_FIELDS and stored.get(k) != current[k])

    @classmethod
    def with_defaults(cls, stored: dict) -> dict:
        """A run's ``config.json`` with the defaults of the fields it lacks (added since it was written), and of
        the method options it lacks (e.g. LoRA's ``blocks`` and ``stages``)."""
        from convlora_lite.peft import METHOD_NAMES, get_method

        defaults = {f.name: f.default for f in dataclasses.fields(cls) if f.default is not dataclasses.MISSING}
        filled = {**jsonable(defaults), **stored}
        if stored.get("method") in METHOD_NAMES and isinstance(stored.get("method_options"), dict):
            filled["method_options"] = jsonable({**get_method(stored["method"]).defaults, **stored["method_options"]})
        return filled


def preset_value(preset: str, name: str) -> Any:
    """The value of the :class:`TrainConfig` field ``name`` on ``preset``: the preset's override, else
    the field's default."""
    overrides = get_preset(preset).overrides
    return overrides[name] if name in overrides else TrainConfig.__dataclass_fields__[name].default


def run_image_size(preset: str, overrides: dict) -> int:
    """A run's input side, the one precedence chain of :meth:`TrainConfig.resolve` and the notebooks: the
    ``image_size`` of ``overrides`` when they set it (``None``: the model's native size), else the preset's,
    else the native size of the run's model (``overrides``' or the preset's)."""
    values = {**get_preset(preset).overrides, **overrides}
    return values.get("image_size") or get_config(values.get("model", TrainConfig.model)).image_size
