"""convlora_lite: Conv-LoRA (Zhong et al., ICLR 2024) for the Segment Anything Model.

The public API: build a SAM, make it prompt-free, apply a PEFT method, train, score.

>>> from convlora_lite import build_sam, PromptFreeSAM, apply_peft
>>> model = apply_peft(PromptFreeSAM(build_sam("micro_sam")), "conv_lora")
"""
__version__ = "0.1.0"

from convlora_lite.analysis.parameter_counts import count_parameters, paper_param_table
from convlora_lite.data import build_dataset, generate_synthetic, get_dataset_spec
from convlora_lite.errors import CheckpointError, ConfigError, DataError, DownloadError, UserError
from convlora_lite.inference import Segmenter, export_run, predict_files
from convlora_lite.models.prompts import Prompts, eval_prompts
from convlora_lite.models.sam import MODEL_CONFIGS, build_sam
from convlora_lite.models.segmenter import PromptedSAM, PromptFreeSAM, SegOutput
from convlora_lite.peft import METHOD_NAMES, apply_peft
from convlora_lite.reports.results_tables import collect_runs, results_table
from convlora_lite.training import TrainConfig, Trainer, evaluate, evaluate_model, fit, load_run
from convlora_lite.training.losses import balanced_bce, get_loss, structure_loss
from convlora_lite.training.metrics import BinarySegMetrics, MultiClassSegMetrics
from convlora_lite.training.presets import PRESET_NAMES, get_preset

#: The repository the notebooks' Colab install cell installs from (also pyproject's
#: ``[project.urls] Repository``; a fork changes these two and nothing else). Releases are tagged
#: ``v{__version__}``, so a notebook installs the package at its own version.
REPOSITORY_URL = "https://github.com/convlora-lite/convlora_lite"


def install_command(extras: str = "notebooks", ref: str | None = None) -> str:
    """The pip command of the notebooks' install cell (on Colab and Kaggle): ``convlora_lite[extras]`` from
    :data:`REPOSITORY_URL` at ``ref`` (default the tag ``v{__version__}``)."""
    ref = ref or f"v{__version__}"
    name = f"convlora_lite[{extras}]" if extras else "convlora_lite"
    return f'pip install -q "{name} @ git+{REPOSITORY_URL}@{ref}"'


__all__ = [
    "build_sam", "MODEL_CONFIGS", "PromptFreeSAM", "SegOutput", "apply_peft", "METHOD_NAMES",
    "PromptedSAM", "Prompts", "eval_prompts",
    "BinarySegMetrics", "MultiClassSegMetrics", "structure_loss", "balanced_bce", "get_loss",
    "fit", "Trainer", "TrainConfig", "evaluate", "evaluate_model", "load_run", "get_preset", "PRESET_NAMES",
    "count_parameters", "paper_param_table", "build_dataset", "get_dataset_spec", "generate_synthetic",
    "collect_runs", "results_table", "Segmenter", "predict_files", "export_run",
    "UserError", "ConfigError", "DataError", "DownloadError", "CheckpointError",
    "REPOSITORY_URL", "install_command",
]
