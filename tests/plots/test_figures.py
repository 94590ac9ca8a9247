"""Figures of convlora_lite.plots.figures: the arrays they draw (hand cases) and the figures' layout."""

import numpy as np
import pytest
import torch

from convlora_lite.data.transforms import normalize_image
from convlora_lite.errors import CheckpointError, DataError
from convlora_lite.plots.class_statistics import class_iou_bars, class_statistics, plot_class_statistics
from convlora_lite.plots.figures import (
    CLASS_PALETTE,
    ERROR_COLOURS,
    IGNORE_COLOUR,
    LABEL_ERROR_COLOURS,
    MASK_COLOUR,
    PREDICTION_COLOUR,
    colorize_labels,
    display_image,
    error_colours,
    error_map,
    overlay,
    plot_history,
    prediction_grid,
)

CLASSES = ("background", "shelf", "jar", "freezer", "window", "door", "eyeglass", "cup", "wall", "bowl", "bottle",
           "box")


def _pixels(h=4, w=6, seed=0):
    return np.random.default_rng(seed).integers(0, 256, size=(h, w, 3), dtype=np.uint8)


def _legend_labels(figure):
    return [t.get_text() for legend in figure.legends for t in legend.get_texts()]


def test_display_image_undoes_the_dataset_normalisation():
    pixels = _pixels()
    shown = display_image(normalize_image(pixels))
    assert shown.shape == (4, 6, 3)
    np.testing.assert_allclose(shown, pixels / 255.0, atol=1e-5)
    np.testing.assert_allclose(display_image(normalize_image(pixels).numpy()), pixels / 255.0, atol=1e-5)
    np.testing.assert_allclose(display_image(pixels), pixels / 255.0)
    with pytest.raises(DataError, match="Expected an image"):
        display_image(np.zeros((4, 6)))


def test_error_colours_hand_case():
    mask = np.array([[1, 1, 0], [0, 0, 1]], dtype=np.float32)
    prob = np.array([[0.9, 0.2, 0.7], [0.1, 0.5, 0.51]])  # 0.5 is not foreground (prob > 0.5)
    out = error_colours(mask, torch.from_numpy(prob))
    expected = np.array([[ERROR_COLOURS["true positive"], ERROR_COLOURS["false negative"],
                          ERROR_COLOURS["false positive"]],
                         [(0, 0, 0), (0, 0, 0), ERROR_COLOURS["true positive"]]])
    np.testing.assert_allclose(out, expected)
    # true negatives show the darkened grey image
    pixels = np.full((2, 3, 3), 200, dtype=np.uint8)
    pixels[1, 0] = (30, 60, 90)
    out = error_colours(mask, prob, image=pixels)
    np.testing.assert_allclose(out[1, 0], [60 / 255 * 0.5] * 3)
    np.testing.assert_allclose(out[1, 1], [200 / 255 * 0.5] * 3)
    np.testing.assert_allclose(out[0, 2], ERROR_COLOURS["false positive"])


def test_error_colours_multiclass_marks_wrong_labels_and_ignored_pixels():
    mask = np.array([[0, 3, 0], [255, 5, 2]])
    pred = np.array([[0, 4, 2], [1, 5, 0]])
    pixels = np.full((2, 3, 3), 100, dtype=np.uint8)
    out = error_colours(mask, pred, pixels, multiclass=True)
    np.testing.assert_allclose(out[0, 0], [100 / 255 * 0.5] * 3)  # correct background: the grey image
    np.testing.assert_allclose(out[0, 1], LABEL_ERROR_COLOURS["wrong class"])
    np.testing.assert_allclose(out[0, 2], LABEL_ERROR_COLOURS["wrong class"])  # background called class 2
    np.testing.assert_allclose(out[1, 0], IGNORE_COLOUR)
    np.testing.assert_allclose(out[1, 1], LABEL_ERROR_COLOURS["correct object class"])
    np.testing.assert_allclose(out[1, 2], LABEL_ERROR_COLOURS["wrong class"])  # object missed


def test_colorize_labels_uses_the_fixed_palette():
    assert CLASS_PALETTE.shape == (12, 3) and len({tuple(c) for c in CLASS_PALETTE}) == 12
    labels = torch.tensor([[0, 11], [255, 4]])
    out = colorize_labels(labels)
    np.testing.assert_allclose(out[0, 0], CLASS_PALETTE[0])
    np.testing.assert_allclose(out[0, 1], CLASS_PALETTE[11])
    np.testing.assert_allclose(out[1, 0], IGNORE_COLOUR)
    np.testing.assert_allclose(out[1, 1], CLASS_PALETTE[4])
    with pytest.raises(DataError, match="outside"):
        colorize_labels(np.array([[12]]))


def test_overlay_binary_panels_and_colours():
    pixels = _pixels()
    mask = np.zeros((4, 6))
    mask[1, 1] = 1
    prob = np.zeros((4, 6))
    prob[2, 3] = 0.8
    figure = overlay(normalize_image(pixels), torch.from_numpy(mask), prob, title="one sample")
    axes = figure.axes
    assert [ax.get_title() for ax in axes] == ["image", "ground truth", "prediction"]
    assert figure._suptitle.get_text() == "one sample"
    shown = pixels / 255.0
    truth_panel, pred_panel = axes[1].images[0].get_array(), axes[2].images[0].get_array()
    np.testing.assert_allclose(truth_panel[1, 1], 0.5 * shown[1, 1] + 0.5 * np.array(MASK_COLOUR), atol=1e-5)
    np.testing.assert_allclose(truth_panel[0, 0], shown[0, 0], atol=1e-5)
    np.testing.assert_allclose(pred_panel[2, 3], 0.5 * shown[2, 3] + 0.5 * np.array(PREDICTION_COLOUR), atol=1e-5)
    assert not figure.legends


def test_overlay_multiclass_has_a_class_legend():
    labels = np.zeros((4, 6), dtype=np.int64)
    labels[0, 0] = 7
    figure = overlay(_pixels(), labels, labels, classes=CLASSES)
    assert _legend_labels(figure) == list(CLASSES)
    np.testing.assert_allclose(figure.axes[1].images[0].get_array()[0, 0],
                               0.45 * _pixels()[0, 0] / 255 + 0.55 * CLASS_PALETTE[7], atol=1e-5)


def test_prediction_grid_layout_as_the_papers_figure():
    images = torch.stack([normalize_image(_pixels(seed=s)) for s in range(3)])
    masks = torch.zeros(3, 4, 6)
    preds = {"LoRA": torch.rand(3, 4, 6), "Conv-LoRA": [np.ones((4, 6))] * 3}
    figure = prediction_grid(images, masks, preds, title="polyp test")
    assert len(figure.axes) == 3 * 4
    assert [ax.get_title() for ax in figure.axes[:4]] == ["image", "ground truth", "LoRA", "Conv-LoRA"]
    assert figure._suptitle.get_text() == "polyp test"
    np.testing.assert_allclose(figure.axes[3].images[0].get_array(), np.ones((4, 6, 3)))  # white foreground
    np.testing.assert_allclose(figure.axes[1].images[0].get_array(), np.zeros((4, 6, 3)))
    with pytest.raises(DataError, match="2 predictions for 3 images"):
        prediction_grid(images, masks, {"LoRA": torch.rand(2, 4, 6)})


def test_prediction_grid_multiclass_colours_and_legend():
    labels = torch.tensor([[[0, 1], [2, 11]]])
    figure = prediction_grid(_pixels(2, 2)[None], labels, {"Conv-LoRA": labels}, classes=CLASSES)
    np.testing.assert_allclose(figure.axes[2].images[0].get_array(), CLASS_PALETTE[labels[0].numpy()])
    assert _legend_labels(figure) == list(CLASSES)


def test_error_map_figure():
    mask = np.array([[1, 0], [0, 0]])
    figure = error_map([_pixels(2, 2), _pixels(2, 2, 1)], [mask, mask], [np.array([[0.9, 0.9], [0, 0]])] * 2)
    assert [ax.get_title() for ax in figure.axes] == ["image 1", "image 2"]
    named = error_map([_pixels(2, 2)] * 2, [mask, mask], [mask, mask], names=["case_017", "case_018"])
    assert [ax.get_title() for ax in named.axes] == ["case_017", "case_018"]
    assert _legend_labels(figure) == list(ERROR_COLOURS)
    np.testing.assert_allclose(figure.axes[0].images[0].get_array()[0, 1], ERROR_COLOURS["false positive"])
    single = error_map(_pixels(2, 2), mask, mask, classes=CLASSES)  # one sample, multi-class
    assert len(single.axes) == 1 and _legend_labels(single) == list(LABEL_ERROR_COLOURS)
    with pytest.raises(DataError, match="give one each"):
        error_map([_pixels(2, 2)], [mask, mask], [mask])




def test_plot_history_marks_the_selection_metric_and_best_epoch(tmp_path, fake_run):
    rows = [dict(epoch=e, train_loss=1 / e, aux_loss=0.01, lr=1e-3, val_ber=b, val_iou=0.5, val_mae=0.2, time_s=1.0)
            for e, b in zip((1, 2, 3), (0.3, 0.1, 0.2))]  # SBU selects the lowest BER: epoch 2
    figure = plot_history(fake_run(tmp_path / "run", "synth_sbu", "conv_lora", 0, history=rows))
    loss_ax, metric_ax = figure.axes
    assert loss_ax.get_xlabel() == metric_ax.get_xlabel() == "epoch"
    assert loss_ax.get_ylabel() == "loss" and "validation" in metric_ax.get_ylabel()
    labels = [line.get_label() for line in metric_ax.get_lines()]
    assert labels == ["ber (selection)", "iou", "mae (lower is better)", "best epoch (2)"]
    np.testing.assert_allclose(loss_ax.get_lines()[0].get_ydata(), [1, 0.5, 1 / 3])
    assert "conv_lora on synth_sbu" in figure._suptitle.get_text()
    with pytest.raises(CheckpointError, match="history.csv"):
        plot_history(tmp_path / "nothing")


class _Pairs:
    """A dataset stand-in with stored label maps (load_pair)."""

    def __init__(self, maps):
        self.maps = maps

    def __len__(self):
        return len(self.maps)

    def load_pair(self, index):
        return None, self.maps[index]


def test_class_statistics_hand_counts_and_figures():
    maps = [np.array([[0, 0], [1, 255]]), np.array([[2, 2], [2, 0]]), np.array([[1, 1], [1, 1]])]
    stats = class_statistics(_Pairs(maps), ("background", "a", "b"), max_items=2)
    assert stats["class"].tolist() == ["background", "a", "b"]
    assert stats["images"].tolist() == [2, 1, 1]
    np.testing.assert_allclose(stats["pixel share (%)"], [300 / 7, 100 / 7, 300 / 7])
    figure = plot_class_statistics(stats, title="three classes")
    assert [ax.get_title() for ax in figure.axes] == ["Pixel share", "Images per class (of 2)"]
    assert figure._suptitle.get_text() == "three classes"


def test_class_iou_bars_and_label_maps():
    iou = {name: i / 20 for i, name in enumerate(CLASSES)}
    iou["box"] = float("nan")
    figure = class_iou_bars(iou, title="per category")
    ax = figure.axes[0]
    heights = [bar.get_height() for bar in ax.patches]
    np.testing.assert_allclose(heights, [i * 5 for i in range(11)] + [0])
    assert ax.get_title() == "per category" and ax.get_ylabel() == "IoU (%)"
    assert ax.get_lines()[0].get_label() == "mIoU 25.0"


def test_compare_curves_overlays_the_mean_of_each_method(tmp_path):
    from convlora_lite.plots.comparisons import compare_curves, params_vs_score
    from convlora_lite.training.rundir import RunDir

    paths = {}
    for method, seeds in (("lora", [0.2, 0.4]), ("conv_lora", [0.3])):
        paths[method] = []
        for s, last in enumerate(seeds):
            run = RunDir(tmp_path / method / str(s))
            run.write_history([{"epoch": 1, "val_iou": 0.1}, {"epoch": 2, "val_iou": last}])
            paths[method].append(run.path)
    figure = compare_curves(paths, "iou")
    lora, conv = figure.axes[0].get_lines()
    assert list(lora.get_ydata()) == pytest.approx([0.1, 0.3]) and list(conv.get_ydata()) == pytest.approx([0.1, 0.3])
    assert lora.get_label() == "lora (2 seeds)" and conv.get_label() == "conv_lora (1 seed)"
    scatter = params_vs_score({"lora": 4_000_000, "conv_lora": 4_020_096}, {"lora": 70.0, "conv_lora": 69.0},
                              metric="iou")
    assert scatter.axes[0].get_xscale() == "linear" and len(scatter.axes[0].collections) == 2
    wide = params_vs_score({"decoder_only": 3_505_536, "lst": 11_490_000 * 10}, {"decoder_only": 60.0, "lst": 61.0},
                           metric="iou")
    assert wide.axes[0].get_xscale() == "log"


def test_disagreement_map_colours_each_side_and_counts_the_share():
    from convlora_lite.plots.comparisons import disagreement_map

    a, b = np.zeros((4, 4)), np.zeros((4, 4))
    a[0, :2] = 0.9  # 2 pixels only a
    b[3, 3] = 0.9  # 1 pixel only b
    figure = disagreement_map([np.full((4, 4, 3), 0.5)], [a], [b], ("lora", "conv_lora"))
    assert figure.axes[0].get_title() == f"{100 * 3 / 16:.1f} % differ"
    shown = figure.axes[0].images[0].get_array()
    assert tuple(shown[0, 0]) == (1.0, 0.55, 0.0) and tuple(shown[3, 3]) == (0.6, 0.2, 1.0)
    assert tuple(shown[2, 2]) == pytest.approx((0.2, 0.2, 0.2))


def _contour_vertices(ax):
    """The vertices of every contour line drawn on ``ax``, (N, 2) as (x, y) = (column, row)."""
    from matplotlib.contour import ContourSet

    sets = [c for c in ax.collections if isinstance(c, ContourSet)]
    return sets, np.concatenate([p.vertices for s in sets for p in s.get_paths()]) if sets else np.zeros((0, 2))


def _on_square_edge(vertices, rows, cols):
    """Whether every vertex lies on the edge of the pixel square ``rows`` x ``cols`` (inclusive
    ranges): half a pixel outside the outermost pixel centres, where the 0.5 level of the mask is."""
    (top, bottom), (left, right) = (rows[0] - 0.5, rows[1] + 0.5), (cols[0] - 0.5, cols[1] + 0.5)
    x, y = vertices[:, 0], vertices[:, 1]
    inside = (x >= left) & (x <= right) & (y >= top) & (y <= bottom)
    on_edge = np.isclose(x, left) | np.isclose(x, right) | np.isclose(y, top) | np.isclose(y, bottom)
    return bool(inside.all() and on_edge.all()), (x.min(), x.max(), y.min(), y.max()) == (left, right, top, bottom)


def test_overlay_outlines_binary_masks_on_their_own_panels():
    mask, prob = np.zeros((10, 10)), np.zeros((10, 10))
    mask[2:5, 3:6] = 1  # rows 2-4, columns 3-5
    prob[6:9, 1:3] = 0.9  # rows 6-8, columns 1-2
    image = np.full((10, 10, 3), MASK_COLOUR)  # the image has the fill's colour: only the outline shows
    figure = overlay(image, mask, prob)
    image_ax, truth_ax, pred_ax = figure.axes
    assert not _contour_vertices(image_ax)[0]
    (truth_set,), truth = _contour_vertices(truth_ax)
    (pred_set,), pred = _contour_vertices(pred_ax)
    assert _on_square_edge(truth, (2, 4), (3, 5)) == (True, True)
    assert _on_square_edge(pred, (6, 8), (1, 2)) == (True, True)
    assert list(truth_set.levels) == [0.5]
    np.testing.assert_allclose(truth_set.get_edgecolor()[0], (1, 1, 1, 1))  # white, with a black rim:
    (rim,) = truth_set.get_path_effects()
    assert rim._gc["foreground"] == "black"
    assert truth_ax.get_xlim() == (-0.5, 9.5) and truth_ax.get_ylim() == (9.5, -0.5)  # still the image's extent


def test_overlay_draws_no_outline_without_an_edge_nor_for_multiclass():
    import warnings

    full = np.ones((4, 6))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # an edgeless mask must not ask matplotlib for a contour
        figure = overlay(_pixels(), full, np.zeros((4, 6)))
    assert not any(ax.collections for ax in figure.axes)
    labels = np.zeros((4, 6), dtype=np.int64)
    labels[1:3, 1:3] = 2
    assert not any(ax.collections for ax in overlay(_pixels(), labels, labels, classes=CLASSES).axes)


def test_class_iou_bars_draw_the_all_background_miou():
    from convlora_lite.plots.figures import BASELINE_NAME
    from convlora_lite.reports.readings import trivial_baseline

    labels = torch.zeros(4, 4, dtype=torch.long)
    labels[0] = 1  # background 12 of 16 pixels, class 1 the rest, class 2 absent
    spec = type("Spec", (), dict(task="multiclass", classes=("background", "a", "b")))
    floor = trivial_baseline([dict(mask=labels)], spec)["miou"]
    figure = class_iou_bars({"background": 0.9, "a": 0.5, "b": float("nan")}, baseline=floor)
    miou, line = figure.axes[0].get_lines()
    assert miou.get_label() == "mIoU 70.0"
    np.testing.assert_allclose(line.get_ydata(), [100 * (12 / 16 + 0) / 2] * 2)  # IoU 0.75 and 0; b has none
    assert line.get_label() == f"{BASELINE_NAME} mIoU 37.5" and line.get_linestyle() == "--"
    # The floor within half a point of the mIoU: one line carrying both labels, not two on top of each other.
    (line,) = class_iou_bars({"background": 0.75, "a": 0.0}, baseline=floor).axes[0].get_lines()
    assert line.get_label() == f"{BASELINE_NAME} mIoU (= this mIoU 37.5) 37.5"


def test_compare_curves_draws_the_baseline_in_history_units(tmp_path):
    from convlora_lite.plots.comparisons import compare_curves
    from convlora_lite.plots.figures import BASELINE_NAME
    from convlora_lite.training.rundir import RunDir

    run = RunDir(tmp_path / "lora")
    run.write_history([{"epoch": 1, "val_ber": 0.4}, {"epoch": 2, "val_ber": 0.2}])
    without = compare_curves({"lora": [run.path]}, "ber")
    assert len(without.axes[0].get_lines()) == 1
    ax = compare_curves({"lora": [run.path]}, "ber", baseline=0.5).axes[0]
    curve, line = ax.get_lines()
    assert line.get_label() == f"{BASELINE_NAME} 0.5" and line.get_linestyle() == "--"
    np.testing.assert_allclose(line.get_ydata(), [0.5, 0.5])  # a fraction, as the curve (0.4, 0.2)
    assert line.get_label() in [t.get_text() for t in ax.get_legend().get_texts()]
    # A floor farther from the curves than their own range (0.3 to 0.4) would squash them: written, not drawn.
    narrow = RunDir(tmp_path / "narrow")
    narrow.write_history([{"epoch": 1, "val_ber": 0.4}, {"epoch": 2, "val_ber": 0.3}])
    ax = compare_curves({"lora": [narrow.path]}, "ber", baseline=0.0).axes[0]
    assert len(ax.get_lines()) == 1 and ax.get_ylim()[0] > 0.2
    (note,) = ax.texts
    assert note.get_text() == f"{BASELINE_NAME}: 0 (below this axis, not drawn)"


def test_figure_titles_clear_the_panel_titles():
    """The suptitle's bottom lies at least 0.3 inch above every panel title's top, measured on the rendered figure
    (a plain tight layout leaves them touching, about 0.05 inch apart)."""
    mask = np.zeros((8, 8))
    mask[2:5, 2:5] = 1
    figure = error_map([_pixels(8, 8)] * 3, [mask] * 3, [mask] * 3, title="Conv-LoRA: where it is wrong")
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    renderer = FigureCanvasAgg(figure).get_renderer()
    title_bottom = figure._suptitle.get_window_extent(renderer).y0
    assert all(ax.title.get_window_extent(renderer).y1 + 0.3 * figure.dpi < title_bottom for ax in figure.axes)


def _results(values: dict):
    """A results table of fake run rows: ``{(method, metric): [value per seed]}`` on synth_leaf/test."""
    import pandas as pd

    from convlora_lite.reports.results_tables import results_table

    rows = [dict(dataset="synth_leaf", method=method, seed=seed, split="test", metric=metric, value=value,
                 run_dir=f"{method}/seed{seed}")
            for (method, metric), seeds in values.items() for seed, value in enumerate(seeds)]
    return results_table(pd.DataFrame(rows))


def test_metric_bars_error_bars_are_the_std_over_seeds():
    from matplotlib.collections import LineCollection

    from convlora_lite.plots.comparisons import metric_bars

    lora_iou, lora_dice = [0.80, 0.84, 0.78], [0.85, 0.90, 0.86]
    results = _results({("lora", "iou"): lora_iou, ("lora", "dice"): lora_dice,
                        ("conv_lora", "iou"): [0.90], ("conv_lora", "dice"): [0.92]})
    ax = metric_bars(results, title="three seeds against one").axes[0]
    metrics = [metric for _, _, metric in results.attrs["mean"].columns]  # the table's column order
    assert [t.get_text() for t in ax.get_legend().get_texts()] == [f"synth_leaf/test {m}" for m in metrics]
    # bars: column by column, method by method (lora first: the paper's order)
    lora, conv_lora = {"iou": lora_iou, "dice": lora_dice}, {"iou": 0.90, "dice": 0.92}
    expected = [100 * v for m in metrics for v in (np.mean(lora[m]), conv_lora[m])]
    np.testing.assert_allclose([b.get_height() for b in ax.patches], expected)
    errors_per_column = [c for c in ax.collections if isinstance(c, LineCollection)]
    for errors, metric, bar in zip(errors_per_column, metrics, ax.patches[::2]):
        seeds = lora[metric]
        (segment,) = errors.get_segments()  # lora only: conv_lora's single seed has no error bar
        (x0, low), (x1, high) = segment
        assert x0 == x1 == pytest.approx(bar.get_x() + bar.get_width() / 2)
        assert (high - low) / 2 == pytest.approx(np.std(100 * np.array(seeds), ddof=1))
        assert (high + low) / 2 == pytest.approx(bar.get_height())
    assert [t.get_text() for t in ax.get_xticklabels()] == ["lora\n3 seeds", "conv_lora\n1 seed"]
    assert ax.get_legend().get_title().get_text() == "error bars: std over seeds\n(1 seed: no error bar)"
    assert ax.get_title() == "three seeds against one"


def test_metric_bars_single_seeds_have_no_error_bars_and_baselines_sit_on_their_bars():
    from matplotlib.collections import LineCollection

    from convlora_lite.plots.comparisons import metric_bars
    from convlora_lite.plots.figures import BASELINE_NAME

    results = _results({("lora", "iou"): [0.7], ("lora", "dice"): [0.8], ("conv_lora", "iou"): [0.75]})
    column = ("synth_leaf", "test", "iou")
    ax = metric_bars(results, baselines={column: 12.5}).axes[0]
    (floor,) = [c for c in ax.collections if isinstance(c, LineCollection)]  # no error bars, one baseline
    bars = {c: ax.patches[2 * k: 2 * k + 2] for k, c in enumerate(results.attrs["mean"].columns)}  # 2 methods
    iou_bars, dice_bars = bars[column], bars[("synth_leaf", "test", "dice")]
    assert len(floor.get_segments()) == 2
    for (start, end), bar in zip(floor.get_segments(), iou_bars):
        assert start[1] == end[1] == 12.5
        assert (start[0], end[0]) == pytest.approx((bar.get_x(), bar.get_x() + bar.get_width()))
    assert [t.get_text() for t in ax.get_legend().get_texts()].count(BASELINE_NAME) == 1
    assert np.isnan(dice_bars[1].get_height())  # conv_lora has no dice: no bar
    assert [t.get_text() for t in ax.get_xticklabels()] == ["lora\n1 seed", "conv_lora\n1 seed"]
