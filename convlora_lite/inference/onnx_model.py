"""A run's ONNX export run by onnxruntime: :class:`OnnxModel`, what :class:`~convlora_lite.inference.Segmenter`
segments with when given a ``.onnx`` file (``convlora export --format onnx``, written by
:mod:`~convlora_lite.inference.onnx_export`).

The file holds the graph of :meth:`PromptFreeSAM.decode <convlora_lite.models.segmenter.PromptFreeSAM.decode>`:

* input ``images``: ``(B, 3, S, S)`` float32, ImageNet-normalised RGB at the run's ``image_size`` S; B is free;
* outputs ``mask_logits`` ``(B, Q, 4g, 4g)`` (the decoder's grid, g = S / patch size; Q = 1 for a binary model)
  and, for a multi-class model, ``class_logits`` ``(B, Q, K + 1)``;

and, in its ``metadata_props``, the format (``convlora_lite.format``), the run's resolved config (``config``, JSON)
and dataset spec (``spec``: task, classes, metrics), and ``pipeline``, the same steps in words and numbers for a
reader outside this package (resize, normalisation, upsampling, threshold). So a ``.onnx`` file needs nothing
else: no run directory, no SAM checkpoint, no PyTorch model code.

:class:`OnnxModel` upsamples the graph's logits and turns them into probabilities with ``PromptFreeSAM``'s own
methods, and the Segmenter resizes and thresholds them as for a run directory: the masks of both paths come
from the same code. onnxruntime runs it on the CPU, or on CUDA where its CUDA provider is installed
(``onnxruntime-gpu``) and the device is ``cuda``; always in float32 (a run trained in fp16 or bf16 autocast is
evaluated in float32 here).
"""
from __future__ import annotations

import importlib
import json
from pathlib import Path
from typing import Optional

import torch

from convlora_lite.errors import CheckpointError, ConfigError
from convlora_lite.models.segmenter import PromptFreeSAM
from convlora_lite.training.config import TrainConfig

FORMAT = "convlora_lite.onnx/1"
#: metadata keys of the file: its format, the run's config and spec, the pipeline in words.
FORMAT_KEY, CONFIG_KEY, SPEC_KEY, PIPELINE_KEY = "convlora_lite.format", "config", "spec", "pipeline"
INPUT, MASK_LOGITS, CLASS_LOGITS = "images", "mask_logits", "class_logits"
INSTALL = "pip install 'convlora_lite[onnx]' (or: pip install onnx onnxscript onnxruntime)"


def require(module: str):
    """Import ``module`` (``onnx``, ``onnxscript``, ``onnxruntime``), or raise ConfigError naming the pip command."""
    try:
        return importlib.import_module(module)
    except ImportError as error:
        raise ConfigError(f"ONNX export and prediction need the {module} package, which is not installed here: "
                          f"{INSTALL}.") from error


def is_onnx(source) -> bool:
    """Whether ``source`` names an ONNX file (by its ``.onnx`` suffix)."""
    return Path(source).suffix.lower() == ".onnx"


def open_session(path, providers: tuple = ("CPUExecutionProvider",)):
    """An onnxruntime session of the ONNX file ``path``; CheckpointError when it cannot be read."""
    ort = require("onnxruntime")
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path} does not exist; pass a run directory or a file written by `convlora export`.")
    try:
        return ort.InferenceSession(str(path), providers=list(providers))
    except Exception as error:  # onnxruntime raises its own classes (InvalidProtobuf, Fail, NoSuchFile, ...)
        first = str(error).strip().splitlines()[0][:300] if str(error).strip() else type(error).__name__
        raise CheckpointError(f"{path} is not a readable ONNX model ({first}). Export it again with `convlora export "
                              f"--format onnx`; a model with a weights file ({path.name}.data) needs it beside it."
                              ) from error


class OnnxModel:
    """An ONNX export run by onnxruntime, with the part of ``PromptFreeSAM``'s interface that the Segmenter uses
    (``eval``, ``to``, ``predict``, ``is_binary``).

    Args:
        path: the ``.onnx`` file.
        config: the run's :class:`~convlora_lite.training.config.TrainConfig` (from the file's metadata).
        session: an onnxruntime session of ``path`` on the CPU (``to("cuda")`` opens one on CUDA if it can).
    """

    upsample = PromptFreeSAM.upsample
    probabilities = PromptFreeSAM.probabilities

    def __init__(self, path, config: TrainConfig, session) -> None:
        self.path, self.config, self.session = Path(path), config, session
        self.num_classes = config.num_classes
        self.image_size = config.image_size

    @property
    def is_binary(self) -> bool:
        return self.num_classes == 1

    @property
    def providers(self) -> list[str]:
        """The onnxruntime execution providers the session runs on, first choice first."""
        return self.session.get_providers()

    def eval(self) -> "OnnxModel":
        """The graph is exported in evaluation mode; nothing to switch."""
        return self

    def to(self, device: str) -> "OnnxModel":
        """Run on CUDA when ``device`` is ``cuda`` and onnxruntime has its CUDA provider, else on the CPU."""
        ort = require("onnxruntime")
        if str(device).startswith("cuda") and "CUDAExecutionProvider" in ort.get_available_providers():
            self.session = open_session(self.path, ("CUDAExecutionProvider", "CPUExecutionProvider"))
        return self

    def decode(self, images: torch.Tensor) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
        """``images`` (B, 3, S, S) -> ``(mask_logits (B, Q, 4g, 4g), class_logits (B, Q, K + 1) or None)`` on the
        CPU, as :meth:`PromptFreeSAM.decode` returns them."""
        outputs = self.session.run(None, {INPUT: images.detach().float().cpu().numpy()})
        logits = [torch.from_numpy(output) for output in outputs]
        return logits[0], (logits[1] if len(logits) > 1 else None)

    @torch.no_grad()
    def predict(self, images: torch.Tensor) -> torch.Tensor:
        """As :meth:`PromptFreeSAM.predict`: binary ``(B, S, S)`` foreground probabilities, multi-class
        ``(B, K, S, S)`` class scores, on the CPU."""
        low_res, class_logits = self.decode(images)
        return self.probabilities(self.upsample(low_res, class_logits, torch.zeros(())))

    def __repr__(self) -> str:
        return f"OnnxModel({self.path}, {self.config.method}, providers {self.providers})"


def read_metadata(session, path) -> tuple[TrainConfig, dict]:
    """``(config, spec dict)`` from an ONNX session's metadata; CheckpointError when it is not a convlora export."""
    metadata = session.get_modelmeta().custom_metadata_map
    if metadata.get(FORMAT_KEY) != FORMAT:
        raise CheckpointError(f"{path} is not a convlora ONNX export (no '{FORMAT}' metadata): it may be another "
                              "model's graph. Pass a run directory or a file of `convlora export --format onnx`.")
    return TrainConfig.from_dict(json.loads(metadata[CONFIG_KEY])), json.loads(metadata[SPEC_KEY])


def load_onnx(path, checkpoint=None):
    """``(OnnxModel, config, spec)`` of a ``convlora export --format onnx`` file, on the CPU. ``checkpoint`` is for
    ``.safetensors`` exports (which reference SAM's weights); an ONNX file holds its weights, so it must be None."""
    from convlora_lite.data.own import OwnDataSpec

    if checkpoint is not None:
        raise ConfigError(f"--checkpoint {checkpoint}: an ONNX file holds all its weights; --checkpoint is for "
                          ".safetensors exports, which reference SAM's. Drop --checkpoint.")
    session = open_session(path)
    config, spec = read_metadata(session, path)
    return OnnxModel(path, config, session), config, OwnDataSpec.from_dict(spec)
