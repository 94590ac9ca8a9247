"""CUDA's autocast, emulated on the CPU: the precision policy a GPU run meets, in a CPU test.

CPU autocast is not CUDA's. On the CPU, ``softmax``, ``layer_norm``, ``softplus``, ``exp``, ``sum`` and
the losses stay in the low precision; under CUDA's autocast they run in fp32, so a model that passes
on the CPU can meet an fp32 tensor beside an fp16 one on a GPU (``docs/precision.md``). This module
reproduces CUDA's policy with a :class:`~torch.overrides.TorchFunctionMode` (above autograd, as the
real autocast: every cast is a differentiable ``.to``), from PyTorch's "Autocast Op Reference":

* the ops CUDA autocasts to float16/bfloat16 (matmuls, linear, convolutions) get their floating
  inputs cast to the low dtype;
* the ops CUDA autocasts to float32 (softmax, norms, exp/log/pow, sum, the losses, ...) get their
  floating inputs cast to fp32;
* the ops CUDA promotes to the widest input type (``scatter_add``, ``index_put``, ``addcmul``, ...)
  get their floating inputs cast to the widest of them;
* every other op runs in its inputs' dtypes, and fails as it fails on a GPU when they differ
  (``scatter``, ``index_add``, ``masked_scatter``, ...).

Composite functions that reach a listed op only through their internals (``einsum``, ``tensordot``,
``scaled_dot_product_attention``) are listed under that op, since the mode sees only the outermost
call. Use it instead of ``torch.autocast`` (never inside it)::

    with EmulatedCudaAutocast(torch.float16):
        out = model(images)
"""
from __future__ import annotations

import torch
from torch.overrides import TorchFunctionMode
from torch.utils._pytree import tree_map

#: CUDA autocasts these to the low precision (float16 or bfloat16).
LOW_PRECISION_OPS = frozenset({
    "__matmul__", "__rmatmul__", "addbmm", "addmm", "addmv", "addr", "baddbmm", "bmm", "chain_matmul",
    "multi_dot", "conv1d", "conv2d", "conv3d", "conv_tbc", "conv_transpose1d", "conv_transpose2d",
    "conv_transpose3d", "linear", "matmul", "mm", "mv", "prelu", "einsum", "scaled_dot_product_attention",
})
#: CUDA autocasts these to float32.
FLOAT32_OPS = frozenset({
    "__pow__", "__rdiv__", "__rpow__", "__rtruediv__", "acos", "asin", "binary_cross_entropy_with_logits",
    "cosh", "cosine_embedding_loss", "cdist", "cosine_similarity", "cross_entropy", "cumprod", "cumsum", "dist",
    "erfinv", "exp", "expm1", "group_norm", "hinge_embedding_loss", "kl_div", "l1_loss", "layer_norm", "log",
    "log_softmax", "log10", "log1p", "log2", "margin_ranking_loss", "mse_loss", "multilabel_margin_loss",
    "multi_margin_loss", "nll_loss", "norm", "normalize", "pdist", "poisson_nll_loss", "pow", "prod",
    "reciprocal", "rsqrt", "sinh", "smooth_l1_loss", "soft_margin_loss", "softmax", "softmin", "softplus", "sum",
    "renorm", "tan", "triplet_margin_loss",
})
#: CUDA casts the inputs of these to the widest floating type among them.
PROMOTE_OPS = frozenset({
    "addcdiv", "addcmul", "atan2", "bilinear", "cross", "dot", "grid_sample", "index_put", "index_put_",
    "scatter_add", "scatter_add_", "tensordot", "stack", "cat",
})


def _eligible(value) -> bool:
    """A tensor autocast would cast: floating point, not float64."""
    return isinstance(value, torch.Tensor) and value.is_floating_point() and value.dtype != torch.float64


def _cast(value, dtype: torch.dtype):
    return value.to(dtype) if _eligible(value) and value.dtype != dtype else value


def _floating_dtypes(args, kwargs) -> set:
    found = set()
    tree_map(lambda v: found.add(v.dtype) if _eligible(v) else None, (args, kwargs))
    return found


def _widest(dtypes: set):
    widest = None
    for dtype in dtypes:
        widest = dtype if widest is None else torch.promote_types(widest, dtype)
    return widest


class EmulatedCudaAutocast(TorchFunctionMode):
    """CUDA's autocast policy with ``dtype`` (``torch.float16`` or ``torch.bfloat16``), on any device.

    ``casts`` counts, by op name, the calls whose inputs the mode cast (a test can check that the
    policy was applied at all)."""

    def __init__(self, dtype: torch.dtype):
        super().__init__()
        if dtype not in (torch.float16, torch.bfloat16):
            raise ValueError(f"CUDA autocasts to float16 or bfloat16, not {dtype}.")
        self.dtype = dtype
        self.casts: dict[str, int] = {}

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        name = getattr(func, "__name__", "")
        dtypes = _floating_dtypes(args, kwargs)
        if name in LOW_PRECISION_OPS:
            target = self.dtype
        elif name in FLOAT32_OPS:
            target = torch.float32
        elif name in PROMOTE_OPS:
            target = _widest(dtypes)
        else:
            target = None
        if target is not None and dtypes - {target}:
            self.casts[name] = self.casts.get(name, 0) + 1
            args, kwargs = tree_map(lambda v: _cast(v, target), args), tree_map(lambda v: _cast(v, target), kwargs)
        return func(*args, **kwargs)
