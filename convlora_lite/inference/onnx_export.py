"""``convlora export --format onnx``: a finished run's prompt-free model as an ONNX graph, how Conv-LoRA ships
(its experts are non-linear, so it cannot be merged into SAM's weights as LoRA can).

:func:`export_onnx` writes the graph of :meth:`PromptFreeSAM.decode
<convlora_lite.models.segmenter.PromptFreeSAM.decode>`, the image encoder with its adapters and the prompt-free
decoder, from normalised images to the decoder's logits, with the run's config and spec in the file's metadata
(the layout: :mod:`~convlora_lite.inference.onnx_model`). Preprocessing and the resizes to the image's size stay in
Python, shared with the PyTorch path, so ``convlora predict --run-dir model.onnx`` writes the masks the run
directory gives.

* Exporter: ``torch.onnx.export(..., dynamo=True)`` at opset :data:`OPSET`, the batch axis free. The TorchScript
  exporter (deprecated since torch 2.9) fails on Conv-LoRA: it traces the float64 bicubic interpolations that
  build the experts' resize matrices into ``Resize`` nodes on float64, which onnxruntime does not implement.
* Conv-LoRA: the top-k gate is a ``TopK`` in the graph, so every window is routed in the graph as in PyTorch;
  the per-sample convolution of the experts (a grouped convolution with one group per sample, which ONNX's
  ``Conv`` cannot take for a free batch) is exported as every expert's convolution followed by each sample's own
  (``MoEConv._expert_convolution``). A run of the official implementation (data-dependent dispatch:
  ``nonzero``, ``.tolist()``) is exported through the fast one with the same weights (the same results at
  top_k = 1, the official setting; refused for top_k >= 2, where the official combine differs).
* Every method exports (prompt-free runs; a prompted run takes a prompt per image: refused).
* Checked before it is kept: onnxruntime runs the written file on a batch of another size than the one traced
  and its logits are compared with PyTorch's; the export is refused when they differ by more than
  :data:`TOLERANCE` (relative to the largest logit).
* Size: weights above :data:`EXTERNAL_DATA_BYTES` (ViT-H: 2.5 GB in float32; ViT-B and ViT-L fit) go to a
  second file, ``<output>.data`` beside the graph (ONNX's protobuf format caps one file at 2 GB): ship both,
  in the same folder. Both are written to a temporary folder and moved into place once checked.
"""
from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import os
import shutil
import warnings
from pathlib import Path
from typing import NamedTuple, Optional

import torch
from torch import nn

from convlora_lite.data.transforms import IMAGENET_MEAN, IMAGENET_STD
from convlora_lite.errors import CheckpointError, ConfigError
from convlora_lite.inference.export import load_source, spec_summary
from convlora_lite.inference.onnx_model import (
    CLASS_LOGITS,
    CONFIG_KEY,
    FORMAT,
    FORMAT_KEY,
    INPUT,
    MASK_LOGITS,
    PIPELINE_KEY,
    SPEC_KEY,
    is_onnx,
    open_session,
    require,
)
from convlora_lite.inference.segmenter import THRESHOLD

#: the ONNX opset: the default of torch's dynamo exporter (torch 2.9+); onnxruntime 1.17 and later run it.
OPSET = 20
#: weights above this many bytes go to an external data file (below ONNX's 2 GB cap on one protobuf file).
EXTERNAL_DATA_BYTES = 1536 * 1024 * 1024
#: the largest accepted difference between onnxruntime's and PyTorch's logits, times max(1, the largest logit).
TOLERANCE = 1e-3


class OnnxExport(NamedTuple):
    """What :func:`export_onnx` wrote: the graph, its external weights file (None when inside the graph), and the
    largest difference between onnxruntime's and PyTorch's logits on the check batch."""

    path: Path
    data: Optional[Path]
    max_difference: float


class _Decode(nn.Module):
    """``images (B, 3, S, S) -> mask_logits`` (binary) or ``(mask_logits, class_logits)``: the exported function."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, images: torch.Tensor):
        mask_logits, class_logits = self.model.decode(images)
        return mask_logits if class_logits is None else (mask_logits, class_logits)


def exportable_model(model: nn.Module, config) -> nn.Module:
    """``model``, or the model an ONNX graph can hold in its place (see the module docstring); ConfigError when
    there is none."""
    from convlora_lite.training.model import build_model

    if config.prompt != "none":
        raise ConfigError(f"{config.method} run with prompt={config.prompt!r}: a prompted model takes a box or a point "
                          "per image, and the ONNX export is of the prompt-free model. Export a prompt-free run "
                          "(trained with --prompt none), or use the run directory or the .safetensors export.")
    options = config.method_options
    if options.get("implementation") != "official":
        return model
    if options.get("top_k", 1) != 1:
        raise ConfigError(f"Conv-LoRA's official implementation dispatches samples with data-dependent shapes "
                          "(nonzero, .tolist()), which an ONNX graph cannot hold, and at top_k="
                          f"{options['top_k']} its combine differs from the fast implementation's, so this run "
                          "cannot be exported to ONNX. Use the run directory or the .safetensors export.")
    fast = build_model(dataclasses.replace(config, method_options={**options, "implementation": "fast"}))
    fast.load_state_dict(model.state_dict())  # the two implementations share their parameters' names
    return fast.eval()


def pipeline(config, spec) -> dict:
    """The steps around the graph in words and numbers, for a reader of the file outside this package."""
    size = config.image_size
    outputs = {MASK_LOGITS: "(B, Q, 4g, 4g) mask logits"}
    if spec.task == "binary":
        post = (f"bilinear upsampling (align_corners=False) of {MASK_LOGITS} to {size}x{size}, then to the image's "
                f"size; foreground where sigmoid > {THRESHOLD}")
    else:
        outputs[CLASS_LOGITS] = "(B, Q, K + 1) class logits, the last one 'no object'"
        post = (f"bilinear upsampling (align_corners=False) of {MASK_LOGITS} to {size}x{size}; class scores "
                f"score_k = sum_q softmax({CLASS_LOGITS})[q, k] * sigmoid(mask_q) for k < K; bilinear to the "
                "image's size; the class of each pixel is the argmax")
    return {"input": f"{INPUT}: (B, 3, {size}, {size}) float32 RGB", "image_size": size,
            "resize": f"bicubic, to {size}x{size} (aspect ratio not kept)", "scale": 1 / 255,
            "mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD), "outputs": outputs, "postprocess": post,
            "threshold": THRESHOLD, "task": spec.task, "classes": list(spec.classes)}


def _check_output(output) -> Path:
    output = Path(output)
    if output.suffix.lower() != ".onnx":
        raise ConfigError(f"--output {output}: --format onnx writes an ONNX file; name it e.g. model.onnx.")
    if output.is_dir():
        raise ConfigError(f"--output {output} is a folder; name the ONNX file to write, e.g. {output / 'model.onnx'}.")
    return output


def _check_finished(source) -> None:
    """CheckpointError for a run directory with weights that has not finished training."""
    from convlora_lite.training.rundir import RunDir

    run = RunDir(source)
    if Path(source).is_dir() and run.has_weights() and not run.is_complete():
        raise CheckpointError(f"{source} has not finished training (its {run.metrics.name} does not say completed): "
                              "an ONNX export ships a finished model. Finish the run first (the same `convlora "
                              "train` command with --resume).")


def _export_program(graph: nn.Module, example: torch.Tensor, output_names: list):
    """The dynamo exporter's ``ONNXProgram`` of ``graph`` on ``example`` with a free batch axis (its progress lines
    and warnings kept out of the user's terminal)."""
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        try:
            return torch.onnx.export(graph, (example,), dynamo=True, opset_version=OPSET, input_names=[INPUT],
                                     output_names=output_names, verbose=False,
                                     dynamic_shapes=({0: torch.export.Dim("batch", min=1)},))
        except Exception as error:
            raise ConfigError(f"torch.onnx could not export this model ({type(error).__name__}: "
                              f"{str(error).strip().splitlines()[-1][:300] if str(error).strip() else ''}). "
                              "Use the run directory or the .safetensors export instead.") from error


def _difference(path: Path, graph: nn.Module, images: torch.Tensor) -> tuple[float, float]:
    """``(largest |onnxruntime - PyTorch|, largest |PyTorch|)`` over the outputs of ``path`` and ``graph`` on
    ``images``."""
    session = open_session(path)
    with torch.no_grad():
        expected = graph(images)
    expected = expected if isinstance(expected, tuple) else (expected,)
    got = session.run(None, {INPUT: images.numpy()})
    difference = max(float((torch.from_numpy(g) - e).abs().max()) for g, e in zip(got, expected))
    return difference, max(float(e.abs().max()) for e in expected)


def export_onnx(source, output) -> OnnxExport:
    """Write the ONNX export of ``source`` (a finished run directory, a ``.safetensors`` export or a Hub folder) to
    ``output`` (``.onnx``); see the module docstring. Nothing is left at ``output`` when it fails."""
    output = _check_output(output)
    require("onnxscript")  # torch's dynamo exporter builds the graph with it
    require("onnxruntime")
    if is_onnx(source):
        raise ConfigError(f"--run-dir {source} is an ONNX export already; export from the run directory (or its "
                          ".safetensors export or Hub folder).")
    _check_finished(source)
    model, config, spec = load_source(source)
    graph = _Decode(exportable_model(model, config)).eval()
    size = config.image_size
    generator = torch.Generator().manual_seed(0)
    example, check = (torch.randn(n, 3, size, size, generator=generator) for n in (2, 1))
    with torch.no_grad():
        graph(example)  # builds what a first forward caches (Conv-LoRA's resize matrices): constants of the graph
    names = [MASK_LOGITS] + ([] if model.is_binary else [CLASS_LOGITS])
    program = _export_program(graph, example, names)
    metadata = {FORMAT_KEY: FORMAT, CONFIG_KEY: json.dumps(config.to_dict()),
                SPEC_KEY: json.dumps(spec_summary(spec)), PIPELINE_KEY: json.dumps(pipeline(config, spec))}
    program.model.metadata_props.update(metadata)
    for node in program.model.graph:  # the exporter's notes per node: stack traces with this machine's paths
        node.metadata_props.clear()
    weight_bytes = sum(t.numel() * t.element_size() for t in [*graph.parameters(), *graph.buffers()])
    external = weight_bytes > EXTERNAL_DATA_BYTES
    tmp = output.with_name(f".{output.name}.tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        program.save(tmp / output.name, external_data=external)
        difference, largest = _difference(tmp / output.name, graph, check)
        if difference > TOLERANCE * max(1.0, largest):
            raise ConfigError(f"the ONNX graph of this {config.method} model computes other logits than PyTorch "
                              f"(largest difference {difference:.2g}, largest logit {largest:.2g}; accepted: "
                              f"{TOLERANCE:g} x max(1, largest logit)); nothing was written. Use the run directory "
                              "or the .safetensors export instead.")
        data = output.with_name(f"{output.name}.data") if external else None
        if data is not None:
            os.replace(tmp / data.name, data)
        os.replace(tmp / output.name, output)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return OnnxExport(output, data, difference)
