"""Diagrams drawn from the models' own configuration: SAM's architecture and where Conv-LoRA enters.

Both are matplotlib ``Figure`` objects made of labelled boxes and arrows; :func:`sam_diagram` reads
the block layout (which blocks attend in windows, which globally) from a
:class:`~convlora_lite.models.sam.SamConfig`, so the micro SAM and ViT-H get their own picture.
"""
from __future__ import annotations

from matplotlib.figure import Figure
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch

WINDOWED, GLOBAL, FROZEN, TRAINED, DATA = "#cfe2f3", "#f4cccc", "#eeeeee", "#d9ead3", "#fff2cc"


def _box(ax, x, y, w, h, text, colour, fontsize=8):
    ax.add_patch(FancyBboxPatch((x, y), w, h, boxstyle="round,pad=0.02", facecolor=colour, edgecolor="0.3"))
    ax.text(x + w / 2, y + h / 2, text, ha="center", va="center", fontsize=fontsize)


def _arrow(ax, start, end, text=None):
    ax.add_patch(FancyArrowPatch(start, end, arrowstyle="-|>", mutation_scale=10, color="0.3"))
    if text:
        ax.text((start[0] + end[0]) / 2, (start[1] + end[1]) / 2 + 0.12, text, ha="center", fontsize=7)


def _canvas(width, height, title):
    figure = Figure(figsize=(width, height))
    ax = figure.subplots()
    ax.set(xlim=(0, width), ylim=(0, height), title=title)
    ax.axis("off")
    return figure, ax


def sam_diagram(config) -> Figure:
    """SAM as this kit uses it: the ViT image encoder (each block windowed or global, as ``config``
    says), the prompt encoder (frozen; prompt-free: only its no-mask embedding) and the mask decoder.
    Used in notebook 00."""
    depth, global_blocks = config.depth, set(config.global_attn_indexes)
    grid, window = config.image_size // config.patch_size, config.window_size
    figure, ax = _canvas(12, 4.6, f"{config.name}: {depth} encoder blocks, {len(global_blocks)} of them global "
                                  f"({grid}x{grid} tokens, {window}x{window} windows)")
    _box(ax, 0.2, 2.0, 1.2, 1.0, f"image\n{config.image_size} px", DATA)
    _box(ax, 1.8, 2.0, 1.2, 1.0, f"patch embed\n{config.patch_size}x{config.patch_size}", FROZEN)
    _arrow(ax, (1.4, 2.5), (1.8, 2.5))
    width = 5.6 / depth
    for i in range(depth):
        kind = "global" if i in global_blocks else "win"
        _box(ax, 3.3 + i * width, 2.0, width * 0.85, 1.0, f"{i}\n{kind}", GLOBAL if i in global_blocks else WINDOWED,
             fontsize=6 if depth > 12 else 7)
    _arrow(ax, (3.0, 2.5), (3.3, 2.5))
    ax.text(6.1, 3.25, "image encoder (ViT, frozen; Conv-LoRA wraps every block's qkv)", ha="center", fontsize=8)
    _box(ax, 9.2, 2.0, 1.1, 1.0, "neck\n-> embedding", FROZEN)
    _arrow(ax, (8.9, 2.5), (9.2, 2.5))
    _box(ax, 9.2, 0.3, 1.1, 1.0, "prompt encoder\n(no prompt)", FROZEN)
    _box(ax, 10.6, 1.2, 1.2, 1.0, "mask decoder\n(trained)", TRAINED)
    _arrow(ax, (10.3, 2.5), (10.6, 1.9))
    _arrow(ax, (10.3, 0.8), (10.6, 1.5))
    ax.text(11.2, 0.8, "masks", ha="center", fontsize=8)
    ax.text(0.2, 0.3, "blue: windowed attention  red: global attention  grey: frozen  green: trained",
            fontsize=7, color="0.3")
    return figure


def conv_lora_diagram() -> Figure:
    """One Conv-LoRA layer (``docs/method.md``): the frozen qkv projection plus the low-rank path whose
    bottleneck h = A x passes through the top-1 mixture of multi-scale convolution experts.
    Used in notebook 02."""
    figure, ax = _canvas(12, 4.2, "Conv-LoRA on one qkv projection: y = W0 x + b0 + (alpha / r) B (h + E_i(h)), "
                                  "h = A x")
    _box(ax, 0.2, 1.7, 1.0, 0.8, "x\n(tokens, C)", DATA)
    _box(ax, 2.0, 3.0, 2.2, 0.8, "W0 x + b0 (frozen qkv)", FROZEN)
    _box(ax, 2.0, 1.7, 1.0, 0.8, "A (r x C)", TRAINED)
    _box(ax, 3.4, 1.7, 1.0, 0.8, "h\n(r channels)", DATA)
    _box(ax, 4.9, 0.3, 1.6, 0.8, "gate: top-1 of\ngap(h) W_g + noise", TRAINED)
    _box(ax, 4.8, 1.7, 2.9, 0.8, "expert i: upsample x s_i -> conv 3x3\n-> GELU -> resize back", TRAINED,
         fontsize=7)
    _box(ax, 8.05, 1.7, 1.0, 0.8, "h + E_i(h)", DATA)
    _box(ax, 9.4, 1.7, 1.3, 0.8, "B (3C x r)\nx alpha / r", TRAINED)
    _box(ax, 10.9, 2.4, 0.9, 0.8, "y", DATA)
    _arrow(ax, (1.2, 2.1), (2.0, 2.1))
    _arrow(ax, (1.2, 2.3), (2.0, 3.3))
    _arrow(ax, (3.0, 2.1), (3.4, 2.1))
    _arrow(ax, (4.4, 2.1), (4.8, 2.1))
    _arrow(ax, (4.4, 1.9), (5.2, 1.1), "pool")
    _arrow(ax, (5.7, 1.1), (5.9, 1.7), "i")
    _arrow(ax, (7.7, 2.1), (8.05, 2.1))
    _arrow(ax, (9.0, 2.1), (9.4, 2.1))
    _arrow(ax, (10.7, 2.2), (10.9, 2.7))
    _arrow(ax, (4.2, 3.4), (10.9, 3.0))
    ax.text(6.8, 0.65, "load-balancing loss 0.01 (cv^2(importance) + cv^2(load))\ntrains the gate", fontsize=7)
    ax.text(0.2, 0.3, "grey: frozen  green: trained  yellow: activations", fontsize=7, color="0.3")
    return figure


def hiera_diagram(layout, image, title: str) -> Figure:
    """Hiera's four stages over one ``image`` ((S, S, 3) RGB, the model's input side): per stage, the token grid its
    blocks' ``qkv`` reads (thin lines), the attention windows (thick lines; none where the stage attends globally)
    and, at the centre, the footprint of a Conv-LoRA expert's 3 x 3 kernel at scale 1 (red) and scale 8 (yellow).
    ``layout`` is :func:`~convlora_lite.analysis.hiera_layout.hiera_layout` of the model at that side.
    Used in notebook 13."""
    from matplotlib.patches import Rectangle

    size = image.shape[0]
    stages = sorted(layout["stage"].unique())
    figure = Figure(figsize=(3.2 * len(stages), 3.9))
    axes = figure.subplots(1, len(stages))
    for ax, stage in zip(axes, stages):
        part = layout[layout["stage"] == stage]
        own = part[~part["pools_queries"]] if (~part["pools_queries"]).any() else part
        row = own.iloc[0]
        windowed = own[own["attention"] == "window"]
        ax.imshow(image, extent=(0, size, size, 0))
        for edge in range(0, size + 1, int(row.stride_px)):
            ax.axhline(edge, color="white", lw=0.3, alpha=0.5)
            ax.axvline(edge, color="white", lw=0.3, alpha=0.5)
        if len(windowed):
            for edge in range(0, size + 1, int(windowed.iloc[0].window_px)):
                ax.axhline(edge, color="tab:blue", lw=1.6)
                ax.axvline(edge, color="tab:blue", lw=1.6)
        for side, colour in ((row.expert_px_s1, "red"), (row.expert_px_s8, "yellow")):
            ax.add_patch(Rectangle((size / 2 - side / 2, size / 2 - side / 2), side, side, fill=False,
                                   edgecolor=colour, lw=1.5))
        globals_ = int((own["attention"] == "global").sum())
        window = f"windows {windowed.iloc[0].window}x{windowed.iloc[0].window}" if len(windowed) else "no windows"
        first, last = part["block"].min(), part["block"].max()
        blocks = f"block {first}" if first == last else f"blocks {first}-{last}"
        before = " before pooling" if row.pools_queries else ""  # a stage whose only block pools its queries
        ax.set_title(f"stage {stage}: {blocks}, width "
                     f"{part['width'].iloc[-1].split(' -> ')[1]}\n{row.grid}x{row.grid} tokens ({row.stride_px} px)"
                     f"{before}, {window}\n{globals_} global block(s)", fontsize=8)
        ax.set(xlim=(0, size), ylim=(size, 0), xticks=[], yticks=[])
    figure.suptitle(title, fontsize=10)
    figure.tight_layout(rect=(0, 0, 1, 0.93))
    return figure
