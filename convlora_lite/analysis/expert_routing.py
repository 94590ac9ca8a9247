"""Which Conv-LoRA expert (feature scale) each window chose, per layer: counts, maps, figures.

Every :class:`~convlora_lite.peft.conv_lora.ConvLoRALinear` keeps the routing of its last
forward in ``last_expert_index`` (B', k): one routing sample per window in SAM's windowed blocks
(B' = B * windows, ``segment_anything.window_partition`` order: image-major, then window rows),
one per image in the global blocks. This module reads those records after a forward pass:

* :func:`record_routing`: run a model on images and keep each layer's choices on its window grid;
* :func:`usage_table`: how many windows chose each expert, per layer (sums to the windows);
* :func:`scale_map`: the chosen scale painted on every token (and pixel) of an image;
* :func:`scale_by_region`: the mean chosen scale per window position over a batch, and
  :func:`scale_by_mask`: per layer, the mean scale of windows on the object vs the background, from
  :func:`window_table`'s one row per window;
* :func:`gate_gradients`: whether the task loss reaches a trained layer's gate (notebook 02's check);
* :func:`expert_receptive_field`: the effective receptive field of one expert (gradient of its
  centre output with respect to its input);
* figures: :func:`plot_usage`, :func:`plot_scale_maps`, :func:`plot_receptive_fields`.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from matplotlib.figure import Figure
from torch import nn

from convlora_lite.errors import ConfigError
from convlora_lite.peft.conv_lora import ConvExpert, ConvLoRALinear


def conv_lora_layers(model: nn.Module) -> list[tuple[int, ConvLoRALinear, int]]:
    """``(block index, layer, window size)`` for every Conv-LoRA ``qkv`` of ``model.image_encoder``
    (window size 0 = global block). Raises ConfigError when there is none. Used in notebook 10."""
    encoder = getattr(model, "image_encoder", model)
    layers = [(i, block.attn.qkv, block.window_size) for i, block in enumerate(encoder.blocks)
              if isinstance(block.attn.qkv, ConvLoRALinear)]
    if not layers:
        raise ConfigError("The model has no Conv-LoRA layers; apply_peft(model, 'conv_lora') first.")
    return layers


@dataclass
class LayerRouting:
    """The top-1 choices of one Conv-LoRA layer on a batch of B images.

    Attributes:
        block: the encoder block's index.
        window: window side in tokens (0 for a global block).
        choice: (B, n, n) long expert index per window (n windows per side; n = 1 for a global block).
        scales: the experts' upsampling factors (choice e has scale ``scales[e]``).
    """

    block: int
    window: int
    choice: torch.Tensor
    scales: tuple

    @property
    def kind(self) -> str:
        return "windowed" if self.window else "global"

    def scale_grid(self) -> torch.Tensor:
        """(B, n, n) float: the chosen scale of every window."""
        return torch.tensor(self.scales, dtype=torch.float)[self.choice]


def layer_routing(block: int, layer: ConvLoRALinear, window: int, batch: int) -> LayerRouting:
    """The :class:`LayerRouting` of ``layer``'s last forward on ``batch`` images (top-1 choice)."""
    if layer.last_expert_index is None:
        raise ConfigError(f"Block {block}'s Conv-LoRA layer has not run yet; run the model on images first.")
    choice = layer.last_expert_index[:, 0].cpu()
    per_side = int(round((choice.numel() // batch) ** 0.5))
    if per_side * per_side * batch != choice.numel():
        raise ConfigError(f"Block {block} routed {choice.numel()} samples, which is not {batch} images of square "
                          "window grids; pass the batch size of the last forward.")
    scales = tuple(float(e.scale) for e in layer.moe.experts)
    return LayerRouting(block, window, choice.view(batch, per_side, per_side), scales)


@torch.no_grad()
def record_routing(model: nn.Module, images: torch.Tensor, batch_size: int = 2) -> list[LayerRouting]:
    """Run ``model`` (a PromptFreeSAM or anything with ``image_encoder``) on ``images`` (B, 3, S, S),
    ``batch_size`` at a time (SAM's global attention holds a (tokens x tokens) matrix per head and
    image: about 1 GB per ViT-H image at 1024 px), moved to the model's device, in its current mode,
    and return every Conv-LoRA layer's :class:`LayerRouting` over all B images, by block (on the CPU).
    Used in notebooks 02, 09, 10 and 12."""
    encoder = getattr(model, "image_encoder", model)
    device = next(encoder.parameters()).device
    parts = []
    for start in range(0, images.shape[0], batch_size):
        chunk = images[start:start + batch_size]
        encoder(chunk.to(device))
        parts.append([layer_routing(i, layer, window, chunk.shape[0]) for i, layer, window in conv_lora_layers(model)])
    return [replace(first, choice=torch.cat([part[k].choice for part in parts]))
            for k, first in enumerate(parts[0])]


def usage_table(routings: list[LayerRouting]) -> pd.DataFrame:
    """One row per (layer, expert): ``block``, ``kind``, ``expert``, ``scale``, ``count`` (routing
    samples that chose it), ``fraction`` (count / samples of that layer). Used in notebooks 02 and 10."""
    rows = []
    for r in routings:
        counts = torch.bincount(r.choice.reshape(-1), minlength=len(r.scales))
        for expert, count in enumerate(counts.tolist()):
            rows.append(dict(block=r.block, kind=r.kind, expert=expert, scale=r.scales[expert], count=count,
                             fraction=count / r.choice.numel()))
    return pd.DataFrame(rows)


def scale_map(routing: LayerRouting, grid: int, image_size: int | None = None) -> torch.Tensor:
    """(B, grid, grid) chosen scale of every token (each token takes its window's choice, the
    padding cropped); with ``image_size`` upsampled (nearest) to (B, image_size, image_size)."""
    scales = routing.scale_grid()
    if routing.window:
        tokens = scales.repeat_interleave(routing.window, 1).repeat_interleave(routing.window, 2)[:, :grid, :grid]
    else:
        tokens = scales.expand(-1, grid, grid)
    if image_size is not None:
        tokens = F.interpolate(tokens[:, None], size=(image_size, image_size), mode="nearest")[:, 0]
    return tokens


def scale_by_region(routings: list[LayerRouting]) -> dict[int, torch.Tensor]:
    """block -> (n, n) mean chosen scale per window position over the batch (windowed layers only).
    Used in notebook 10."""
    return {r.block: r.scale_grid().mean(0) for r in routings if r.window}


def scale_by_mask(routings: list[LayerRouting], masks: torch.Tensor, grid: int) -> pd.DataFrame:
    """Mean chosen scale of windows on the object vs the background, per windowed layer.

    ``masks`` (B, S, S) in {0, 1}; a window is "object" when more than half of its (unpadded)
    tokens are foreground after resizing the mask to the token grid, else "background".
    Returns rows ``block``, ``region``, ``mean_scale``, ``windows``.
    Used in notebook 10."""
    table = window_table(routings, masks, grid)
    rows = []
    for block in dict.fromkeys(table["block"]):
        for region in ("object", "background"):
            chosen = table.scale[(table.block == block) & (table.region == region)]
            rows.append(dict(block=block, region=region, windows=len(chosen),
                             mean_scale=float(chosen.mean()) if len(chosen) else float("nan")))
    return pd.DataFrame(rows)


def window_table(routings: list[LayerRouting], masks: torch.Tensor, grid: int) -> pd.DataFrame:
    """One row per window of every image in every windowed layer: ``block``, ``image``, ``row``, ``col``,
    ``scale`` (the chosen expert's), ``foreground`` (the fraction of its unpadded tokens on the object, ``masks``
    (B, S, S) in {0, 1} resized to the token grid), ``region`` ("object" above one half, as :func:`scale_by_mask`,
    else "background") and ``border`` (the window lies on the edge of the window grid). Used in notebooks 10 and 12."""
    token_fg = F.adaptive_avg_pool2d(masks.float()[:, None], grid)[:, 0]  # (B, grid, grid)
    rows = []
    for r in routings:
        if not r.window:
            continue
        n = r.choice.shape[1]
        padded = F.pad(token_fg, (0, n * r.window - grid, 0, n * r.window - grid), value=float("nan"))
        windows = padded.view(-1, n, r.window, n, r.window).permute(0, 1, 3, 2, 4).reshape(-1, n, n, r.window ** 2)
        foreground, scales = torch.nanmean(windows, dim=-1), r.scale_grid()
        for image, row, col in np.ndindex(*scales.shape):
            fg = float(foreground[image, row, col])
            rows.append(dict(block=r.block, image=image, row=row, col=col, scale=float(scales[image, row, col]),
                             foreground=fg, region="object" if fg > 0.5 else "background",
                             border=row in (0, n - 1) or col in (0, n - 1)))
    return pd.DataFrame(rows)


def gate_gradients(model: nn.Module, images: torch.Tensor, block: int | None = None):
    """Who trains the gate of a trained model's first Conv-LoRA layer (or the one of ``block``), as notebook 02
    checks on a fresh one: the layer's input on ``images`` (B, 3, S, S) is captured, then in training mode a task
    loss (the mean square of the layer's output) and the layer's load-balancing loss are back-propagated one at a
    time. Returns ``(W_gate.grad from the task loss or None, W_gate.grad from the balance loss)``; the model is left
    in evaluation mode with no gradients. Used in notebooks 10 and 12."""
    layers = {index: layer for index, layer, _ in conv_lora_layers(model)}
    layer = layers[block if block is not None else min(layers)]
    captured = {}
    handle = layer.register_forward_hook(lambda _module, inputs, _output: captured.update(x=inputs[0].detach()))
    with torch.no_grad():
        getattr(model, "image_encoder", model)(images.to(next(layer.parameters()).device))
    handle.remove()
    layer.train()
    try:
        with torch.enable_grad():
            layer.zero_grad()
            layer(captured["x"]).pow(2).mean().backward()
            from_task = layer.moe.gate.w_gate.grad
            layer.zero_grad()
            layer(captured["x"])
            layer.aux_loss.backward()
            from_balance = layer.moe.gate.w_gate.grad.clone()
    finally:
        layer.zero_grad()
        model.eval()
    return from_task, from_balance


def expert_receptive_field(expert: ConvExpert, size: int = 15, samples: int = 8, seed: int = 0) -> torch.Tensor:
    """(size, size) effective receptive field of ``expert`` on a size x size map: the mean over
    ``samples`` random inputs of |d out[centre] / d in| summed over channels, normalised to sum 1
    (Luo et al., 2016). Uses the expert's own weights. Used in notebook 10."""
    weight = expert.weight.detach()
    channels = weight.shape[1]
    generator = torch.Generator().manual_seed(seed)
    total = torch.zeros(size, size)
    for _ in range(samples):
        x = torch.randn(1, channels, size, size, generator=generator, dtype=weight.dtype).to(weight.device)
        x.requires_grad_(True)
        with torch.enable_grad():
            expert(x)[0, :, size // 2, size // 2].sum().backward()
        total += x.grad.abs().sum(1)[0].float().cpu()
    return total / total.sum()


def receptive_field_radius(field: torch.Tensor) -> float:
    """The root-mean-square distance (in tokens) of a receptive field's mass from its centre. Used in notebook 10."""
    size = field.shape[-1]
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    d2 = (yy - size // 2) ** 2 + (xx - size // 2) ** 2
    return float((field * d2).sum().sqrt())


def plot_usage(usage: pd.DataFrame, title: str = "Conv-LoRA expert usage per layer"):
    """Heat map of :func:`usage_table`: layers (rows) x expert scale (columns), fraction of windows.
    Used in notebooks 02 and 10."""
    grid = usage.pivot_table(index=["block", "kind"], columns="scale", values="fraction")
    fig = Figure(figsize=(1.0 + 0.7 * grid.shape[1], 0.9 + 0.45 * grid.shape[0]))
    ax = fig.subplots()
    image = ax.imshow(grid.to_numpy(), cmap="viridis", vmin=0, vmax=1, aspect="auto")
    ax.set_xticks(range(grid.shape[1]), [f"×{s:g}" for s in grid.columns])
    ax.set_yticks(range(grid.shape[0]), [f"block {b} ({k})" for b, k in grid.index])
    for (i, j), value in np.ndenumerate(grid.to_numpy()):
        ax.text(j, i, f"{value:.2f}", ha="center", va="center", fontsize=7, color="w" if value < 0.6 else "k")
    ax.set(title=title, xlabel="expert (upsampling scale)", ylabel="layer")
    fig.colorbar(image, ax=ax, label="fraction of routing samples")
    fig.tight_layout()
    return fig


def scale_colours(scales) -> tuple:
    """A discrete colour map for expert scales: ``(cmap, norm, ticks)`` giving each scale of ``scales``
    its own colour (a scale map shows choices, not a continuum)."""
    from matplotlib import colormaps
    from matplotlib.colors import BoundaryNorm, ListedColormap

    ticks = sorted(set(float(s) for s in scales))
    cmap = ListedColormap(colormaps["viridis"](np.linspace(0, 1, len(ticks))))
    edges = [ticks[0] - 0.5] + [(a + b) / 2 for a, b in zip(ticks, ticks[1:])] + [ticks[-1] + 0.5]
    return cmap, BoundaryNorm(edges, cmap.N), ticks


def plot_scale_maps(image: np.ndarray, routings: list[LayerRouting], index: int, grid: int,
                    title: str = "Chosen expert scale per window, by layer"):
    """One panel per Conv-LoRA layer after ``image`` (S, S, 3) in [0, 1]: the token grid of image ``index`` coloured
    by the scale each window chose (opaque, one colour per scale) with the scale written in every window (global
    blocks: one choice for the whole image), so it reads without the colour bar. Used in notebook 09."""
    cmap, norm, ticks = scale_colours([s for r in routings for s in r.scales])
    fig = Figure(figsize=(2.3 * (len(routings) + 1), 2.9))
    axes = fig.subplots(1, len(routings) + 1, squeeze=False)[0]
    axes[0].imshow(image, extent=(0, grid, grid, 0))
    axes[0].set_title("image", fontsize=9)
    for ax, r in zip(axes[1:], routings):
        shown = ax.imshow(scale_map(r, grid)[index].numpy(), cmap=cmap, norm=norm, interpolation="nearest",
                          extent=(0, grid, grid, 0))
        side = r.window or grid
        for row, col in np.ndindex(*r.choice.shape[1:]):
            top, left = row * side, col * side
            centre = ((left + min(left + side, grid)) / 2, (top + min(top + side, grid)) / 2)
            scale = r.scales[int(r.choice[index, row, col])]
            ax.text(*centre, f"×{scale:g}", ha="center", va="center", fontsize=8,
                    color="w" if norm(scale) < cmap.N / 2 else "k")
        ax.set_title(f"block {r.block} ({r.kind})", fontsize=9)
    for ax in axes:
        ax.set(xlabel="token x", ylabel="token y")
        ax.label_outer()
    fig.colorbar(shown, ax=axes.tolist(), label="expert scale", shrink=0.8, ticks=ticks)
    fig.suptitle(title)
    return fig


def plot_receptive_fields(fields: dict[float, torch.Tensor], title: str = "Effective receptive field of each expert"):
    """One panel per expert scale (``scale -> (size, size)`` field), with its RMS radius. Used in notebook 10."""
    fig = Figure(figsize=(1.9 * len(fields), 2.4))
    axes = fig.subplots(1, len(fields), squeeze=False)
    for ax, (scale, field) in zip(axes[0], fields.items()):
        ax.imshow(field.numpy(), cmap="magma")
        ax.set_title(f"×{scale:g}: r={receptive_field_radius(field):.2f}", fontsize=9)
        ax.set(xlabel="token x", ylabel="token y")
        ax.label_outer()
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_scale_by_region(region: dict[int, torch.Tensor], scales: tuple,
                         title: str = "Mean chosen scale per window position"):
    """One heat map per windowed layer of :func:`scale_by_region` (window rows x columns). Used in notebook 10."""
    fig = Figure(figsize=(2.4 * len(region) + 0.8, 2.8))
    axes = fig.subplots(1, len(region), squeeze=False)
    for ax, (block, grid) in zip(axes[0], region.items()):
        shown = ax.imshow(grid.numpy(), cmap="plasma", vmin=min(scales), vmax=max(scales))
        ax.set_title(f"block {block}", fontsize=9)
        ax.set(xlabel="window column", ylabel="window row")
        ax.label_outer()
    fig.colorbar(shown, ax=axes[0].tolist(), label="mean expert scale", shrink=0.8)
    fig.suptitle(title)
    return fig


def plot_scale_by_mask(table: pd.DataFrame, title: str = "Mean chosen scale: object vs background windows"):
    """Grouped bars of :func:`scale_by_mask`: per windowed layer, object and background windows, each bar labelled
    with its number of windows n. Used in notebook 10."""
    wide = table.pivot(index="block", columns="region", values="mean_scale")
    fig = Figure(figsize=(6, 3.2))
    ax = fig.subplots()
    wide.plot.bar(ax=ax, rot=0, color={"object": "tab:orange", "background": "tab:gray"})
    counts = table.pivot(index="block", columns="region", values="windows")[wide.columns]
    for bars, region in zip(ax.containers, wide.columns):
        ax.bar_label(bars, labels=[f"n={n}" for n in counts[region]], fontsize=7)
    ax.margins(y=0.15)
    ax.set(title=title, xlabel="block (windowed layers)", ylabel="mean expert scale")
    fig.tight_layout()
    return fig
