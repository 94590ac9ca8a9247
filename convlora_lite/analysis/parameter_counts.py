"""Parameter accounting, the paper's way (#Params and Ratio of its Table 1).

``#Params`` counts what trains: the adapter's parameters plus the mask decoder without its IoU
head, with one mask token and one hypernetwork MLP (the prompt-free binary decoder of
:class:`~convlora_lite.models.segmenter.PromptFreeSAM`). ``Ratio`` divides it by the parameter count of
the *full* SAM (ViT-H: 641,090,608; ViT-L: 312,342,832; ViT-B: 93,735,472) plus the parameters
the method adds. The paper (``docs/recipe.md``, "Parameter table") writes the denominator as
641.09 M; for every row but LST the two readings round to the same percentage, and LST's 1.77 %
(11.49 M) only comes out with the added 7.98 M in the denominator (11.49 / 641.09 would be 1.79 %),
so that is the paper's reading.
The tables are computed on the meta device: nothing is allocated or downloaded.
"""
from __future__ import annotations

from typing import Iterable

import torch
from torch import nn

from convlora_lite.errors import ConfigError
from convlora_lite.models.sam import build_sam
from convlora_lite.models.segmenter import PromptFreeSAM
from convlora_lite.peft import METHOD_NAMES, apply_peft


def count_parameters(model: nn.Module) -> dict:
    """``dict(trainable=int, total=int, ratio=trainable / total)`` over ``model``'s parameters. Used in notebook 00."""
    params = list(model.parameters())
    total = sum(p.numel() for p in params)
    trainable = sum(p.numel() for p in params if p.requires_grad)
    return {"trainable": trainable, "total": total, "ratio": trainable / total if total else 0.0}


def sam_parameter_count(model_name: str) -> int:
    """Parameters of the full SAM ``model_name`` (all four mask tokens and MLPs), counted on the
    meta device; the denominator of the paper's Ratio."""
    return count_parameters(build_sam(model_name, device="meta"))["total"]


def parse_methods(methods: str | Iterable[str] | None) -> list[str]:
    """``"all"``/``None`` -> every method in the paper's order; ``"a,b"`` or a list -> those names,
    each checked against :data:`~convlora_lite.peft.METHOD_NAMES`."""
    if methods is None or methods == "all":
        return list(METHOD_NAMES)
    names = [m.strip() for m in methods.split(",")] if isinstance(methods, str) else list(methods)
    unknown = [m for m in names if m not in METHOD_NAMES]
    if unknown or not names:
        raise ConfigError(f"Unknown method(s) {unknown or names}; choose from {', '.join(METHOD_NAMES)} or 'all'.")
    return names


def paper_param_table(model_name: str = "vit_h", methods: str | Iterable[str] | None = "all") -> list[dict]:
    """The paper's #Params / Ratio rows for ``methods`` on SAM ``model_name``.

    Each method is really applied (``build_sam(..., device="meta")`` -> binary
    :class:`PromptFreeSAM` -> ``apply_peft`` with its defaults) and its trainable parameters
    counted.

    Returns:
        One dict per method: ``method``, ``trainable``, ``added`` (parameters the method
        creates), ``total`` (the full SAM count plus ``added``: the denominator) and ``ratio``
        (trainable / total).

    Used in notebook 08."""
    sam_total = sam_parameter_count(model_name)
    rows = []
    for method in parse_methods(methods):
        with torch.device("meta"):  # adapters created by inject stay unallocated too
            model = PromptFreeSAM(build_sam(model_name, device="meta"))
            before = count_parameters(model)["total"]
            counts = count_parameters(apply_peft(model, method))
        trainable, added = counts["trainable"], counts["total"] - before
        total = sam_total + added
        rows.append({"method": method, "trainable": trainable, "added": added, "total": total,
                     "ratio": trainable / total})
    return rows


def format_param_table(rows: list[dict], model_name: str) -> str:
    """``rows`` of :func:`paper_param_table` as a plain-text table (M parameters, % ratio)."""
    lines = [f"SAM {model_name}: {rows[0]['total'] - rows[0]['added']:,} parameters in all "
             "(the Ratio's denominator, plus what each method adds)",
             f"{'method':<14}{'#Params (M)':>13}{'trainable':>14}{'Ratio':>9}"]
    for row in rows:
        lines.append(f"{row['method']:<14}{row['trainable'] / 1e6:>13.2f}{row['trainable']:>14,}{row['ratio']:>9.2%}")
    return "\n".join(lines)
