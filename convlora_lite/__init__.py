"""convlora_lite: Conv-LoRA (Zhong et al., ICLR 2024) for the Segment Anything Model.

The public API (DESIGN.md): build a SAM, make it prompt-free, apply a PEFT method, train, score.

>>> from convlora_lite import build_sam, PromptFreeSAM, apply_peft
>>> model = apply_peft(PromptFreeSAM(build_sam("micro_sam")), "conv_lora")
"""
__version__ = "0.1.0"

from .data import build_dataset, generate_synthetic, get_dataset_spec
from .errors import CheckpointError, ConfigError, DataError, DownloadError, UserError
from .losses import balanced_bce, get_loss, structure_loss
from .metrics import BinarySegMetrics, MultiClassSegMetrics
from .params import count_parameters, paper_param_table
from .peft import METHOD_NAMES, apply_peft
from .presets import PRESET_NAMES, get_preset
from .results import collect_runs, results_table
from .sam import MODEL_CONFIGS, build_sam
from .segmenter import PromptFreeSAM, SegOutput
from .train import TrainConfig, Trainer, evaluate, fit, load_run

__all__ = [
    "build_sam", "MODEL_CONFIGS", "PromptFreeSAM", "SegOutput", "apply_peft", "METHOD_NAMES",
    "BinarySegMetrics", "MultiClassSegMetrics", "structure_loss", "balanced_bce", "get_loss",
    "fit", "Trainer", "TrainConfig", "evaluate", "load_run", "get_preset", "PRESET_NAMES",
    "count_parameters", "paper_param_table", "build_dataset", "get_dataset_spec", "generate_synthetic",
    "collect_runs", "results_table",
    "UserError", "ConfigError", "DataError", "DownloadError", "CheckpointError",
]
