"""The diagrams are drawn from the model's configuration."""
from matplotlib.colors import to_hex
from matplotlib.patches import FancyBboxPatch

from convlora_lite.models.sam import get_config
from convlora_lite.plots.diagrams import GLOBAL, WINDOWED, conv_lora_diagram, sam_diagram


def _colours(figure):
    return [to_hex(p.get_facecolor()) for p in figure.axes[0].patches if isinstance(p, FancyBboxPatch)]


def test_sam_diagram_has_one_box_per_block_coloured_by_attention():
    for name in ("micro_sam", "vit_h"):
        config = get_config(name)
        colours = _colours(sam_diagram(config))
        assert colours.count(GLOBAL) == len(config.global_attn_indexes)
        assert colours.count(WINDOWED) == config.depth - len(config.global_attn_indexes)
    assert "32 encoder blocks, 4 of them global" in sam_diagram(get_config("vit_h")).axes[0].get_title()


def test_conv_lora_diagram_names_the_formula():
    title = conv_lora_diagram().axes[0].get_title()
    assert "y = W0 x + b0 + (alpha / r) B (h + E_i(h)), h = A x" in title
