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

On SAM 2.1 (``sam2.1_hiera_*``) the same table counts the prompt-free binary SAM 2 decoder
(:class:`~convlora_lite.models.segmenter_sam2.PromptFreeSAM2`: one mask token and hypernetwork MLP, the
object-score and IoU tokens, the high-resolution projections ``conv_s0``/``conv_s1``; no IoU or object-score head)
over the full ``SAM2Base`` (Meta's published counts: 38.96, 46.06, 80.85 and 224.45 M, video memory included);
a method that is not available on Hiera (``docs/sam2.md``) gets a row that says so.
"""
from __future__ import annotations

from typing import Iterable

import torch
from torch import nn

from convlora_lite.errors import ConfigError
from convlora_lite.models.sam import build_sam
from convlora_lite.models.segmenter_sam2 import segmenter_for
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
    :class:`PromptFreeSAM` (SAM 2.1: ``PromptFreeSAM2``) -> ``apply_peft`` with its defaults) and its trainable
    parameters counted.

    Returns:
        One dict per method: ``method``, ``trainable``, ``added`` (parameters the method
        creates), ``total`` (the full SAM count plus ``added``: the denominator) and ``ratio``
        (trainable / total). With ``methods="all"``, a method that does not apply to the backbone (VPT,
        SAM-Adapter and LST on SAM 2.1) gets ``None`` for these and ``unavailable``: the reason; a method named
        explicitly raises its :class:`ConfigError` instead.

    Used in notebook 08."""
    sam_total = sam_parameter_count(model_name)
    rows = []
    every = methods is None or methods == "all"
    for method in parse_methods(methods):
        with torch.device("meta"):  # adapters created by inject stay unallocated too
            model = segmenter_for(build_sam(model_name, device="meta"))
            before = count_parameters(model)["total"]
            try:
                counts = count_parameters(apply_peft(model, method))
            except ConfigError as err:
                if not every:
                    raise
                rows.append({"method": method, "trainable": None, "added": None, "total": None, "ratio": None,
                             "unavailable": str(err)})
                continue
        trainable, added = counts["trainable"], counts["total"] - before
        total = sam_total + added
        rows.append({"method": method, "trainable": trainable, "added": added, "total": total,
                     "ratio": trainable / total})
    return rows


def format_param_table(rows: list[dict], model_name: str) -> str:
    """``rows`` of :func:`paper_param_table` as a plain-text table (M parameters, % ratio)."""
    counted = [row for row in rows if row["trainable"] is not None]
    lines = [f"SAM {model_name}: {counted[0]['total'] - counted[0]['added']:,} parameters in all "
             "(the Ratio's denominator, plus what each method adds)",
             f"{'method':<14}{'#Params (M)':>13}{'trainable':>14}{'Ratio':>9}"]
    for row in rows:
        if row["trainable"] is None:
            lines.append(f"{row['method']:<14}{'not available on this backbone (docs/sam2.md)':>36}")
            continue
        lines.append(f"{row['method']:<14}{row['trainable'] / 1e6:>13.2f}{row['trainable']:>14,}{row['ratio']:>9.2%}")
    return "\n".join(lines)
