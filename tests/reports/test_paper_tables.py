"""The paper's numbers in convlora_lite.reports.paper_tables against docs/recipe.md, and the comparison tables."""

import numpy as np
import pytest

from convlora_lite.data.registry import get_dataset_spec
from convlora_lite.errors import ConfigError
from convlora_lite.reports.paper_tables import (
    CITATION,
    PAPER_PARAMS,
    PAPER_RESULTS,
    PAPER_TOTAL_PARAMS_M,
    compare_with_paper,
    paper_gains,
    paper_param_rows,
    paper_results,
    recipe_comparison,
)
from convlora_lite.training import TrainConfig


def _cell(table, test_set, metric):
    row = table[(table["test set"] == test_set) & (table["metric"] == metric)]
    assert len(row) == 1, (test_set, metric)
    return row["LoRA"].item(), row["Conv-LoRA"].item()


def test_results_equal_the_reference_table():
    table = paper_results()
    # spot checks, copied from docs/recipe.md, "Paper results"
    assert _cell(table, "Kvasir", "S_alpha") == (91.2, 92.0)
    assert _cell(table, "CVC-612", "E_phi") == (92.5, 94.0)
    assert _cell(table, "ISIC 2017", "IoU") == (76.6, 77.6)
    assert _cell(table, "CAMO", "F^w_beta") == (82.8, 84.0)
    assert _cell(table, "SBU", "BER") == (2.74, 2.54)
    assert _cell(table, "Leaf", "Dice") == (83.6, 84.3)
    assert _cell(table, "Road", "IoU") == (62.2, 62.6)
    assert _cell(table, "Trans10K-v2", "mIoU") == (66.01, 67.09)
    assert _cell(table, "Trans10K-v2", "Acc") == (94.80, 95.07)
    assert len(table) == 16  # 2 + 2 + 2 + 3 + 1 + 2 + 2 + 2 cells
    assert table.attrs["citation"] == CITATION and "2401.17868" in CITATION


def test_every_paper_cell_is_a_registered_split_and_metric():
    for cell in PAPER_RESULTS:
        spec = get_dataset_spec(cell.dataset)
        assert cell.split in spec.test_splits and cell.metric in spec.metrics, cell
    covered = {(c.dataset, c.split, c.metric) for c in PAPER_RESULTS}
    for name in ("polyp", "isic2017", "camo", "sbu", "leaf", "road", "trans10k"):
        spec = get_dataset_spec(name)
        assert {(name, s, m) for s in spec.test_splits for m in spec.metrics if m != "iou_per_class"} <= covered


def test_paper_results_layout_and_filter():
    table = paper_results("synth_polyp")  # an analog shows its real task's rows
    assert list(table.columns) == ["dataset", "split", "test set", "metric", "better", "LoRA", "Conv-LoRA"]
    assert table["test set"].tolist() == ["Kvasir", "Kvasir", "CVC-612", "CVC-612"]
    assert paper_results("sbu")["better"].tolist() == ["lower"]
    with pytest.raises(ConfigError):
        paper_results("mnist")


def test_parameter_table_equals_the_reference_and_is_consistent():
    assert PAPER_PARAMS["conv_lora"] == (4.02, 0.63) and PAPER_PARAMS["lora"] == (4.00, 0.62)
    assert PAPER_PARAMS["lst"] == (11.49, 1.77) and PAPER_PARAMS["decoder_only"] == (3.51, 0.55)
    decoder = PAPER_PARAMS["decoder_only"][0]
    for method, (params, ratio) in PAPER_PARAMS.items():  # Ratio = #Params / (SAM + added), to the printed digits
        assert abs(100 * params / (PAPER_TOTAL_PARAMS_M + params - decoder) - ratio) <= 0.006, method
    rows = paper_param_rows()
    assert list(rows.columns) == ["method", "#Params (M)", "Ratio (%)"] and len(rows) == 9


def test_parameter_table_matches_our_counts_on_vit_h():
    from convlora_lite.analysis.parameter_counts import paper_param_table

    for row in paper_param_table("vit_h", "decoder_only,lora,conv_lora"):
        assert round(row["trainable"] / 1e6, 2) == PAPER_PARAMS[row["method"]][0]




def test_compare_with_paper_layout_and_values(tmp_path, fake_run):
    runs = [fake_run(tmp_path / f"s{seed}", "polyp", "conv_lora", seed,
                     {"test_kvasir": {"s_alpha": sa, "e_phi": 0.9}, "test_cvc": {"s_alpha": 0.8, "e_phi": 0.85}},
                     model="vit_b")
            for seed, sa in ((1, 0.90), (2, 0.92))]
    table = compare_with_paper(runs)
    assert list(table.columns) == ["test set", "metric", "better", "paper LoRA", "paper Conv-LoRA", "ours",
                                   "ours std", "seeds", "ours - paper"]
    assert table["test set"].tolist() == ["Kvasir", "Kvasir", "CVC-612", "CVC-612"]
    first = table.iloc[0]
    assert first["metric"] == "S_alpha" and first["paper Conv-LoRA"] == 92.0 and first["paper LoRA"] == 91.2
    np.testing.assert_allclose([first["ours"], first["ours std"], first["ours - paper"]],
                               [91.0, np.std([90, 92], ddof=1), -1.0])
    assert first["seeds"] == 2
    assert table.attrs["model"] == "vit_b" and table.attrs["method"] == "conv_lora"
    assert table.attrs["paper_row"] == "Conv-LoRA"
    single = compare_with_paper(runs[0])
    assert np.isnan(single.iloc[0]["ours std"]) and single.iloc[0]["seeds"] == 1
    lora = fake_run(tmp_path / "lora", "sbu", "lora", 1, {"test": {"ber": 0.03}}, model="vit_b")
    row = compare_with_paper(lora).iloc[0]  # a LoRA run is compared with the paper's LoRA row
    np.testing.assert_allclose([row["ours"], row["ours - paper"]], [3.0, 3.0 - 2.74])


def test_compare_with_paper_refuses_synthetic_and_mixed_runs(tmp_path, fake_run):
    synth = fake_run(tmp_path / "synth", "synth_sbu", "conv_lora", 1, {"test": {"ber": 0.1}}, model="vit_b")
    with pytest.raises(ConfigError, match="NOT comparable"):
        compare_with_paper(synth)
    a = fake_run(tmp_path / "a", "sbu", "conv_lora", 1, {"test": {"ber": 0.1}}, model="vit_b")
    b = fake_run(tmp_path / "b", "sbu", "lora", 1, {"test": {"ber": 0.1}}, model="vit_b")
    with pytest.raises(ConfigError, match="one dataset and one method"):
        compare_with_paper([a, b])


def test_recipe_comparison_shows_official_and_preset_settings():
    config = TrainConfig.resolve("synth_leaf", "conv_lora", "cpu", epochs=3, device="cpu", max_eval_batches=2)
    table = recipe_comparison(config)
    assert list(table.columns) == ["official", "this run"]
    assert table.loc["epochs"].tolist() == ["30", "3"]
    assert table.loc["lr"].tolist() == ["0.0003", str(config.lr)]
    assert table.loc["model"].tolist() == ["vit_h", "micro_sam"]
    assert table.loc["precision"].tolist() == ["fp16", "fp32"]  # "auto" is fp32 on a CPU
    assert table.loc["max eval batches"].tolist() == ["all", "2"]
    assert table.loc["selection", "official"] == "iou (max)" and table.loc["dataset", "official"] == "leaf"


def test_paper_gains_are_conv_lora_over_lora_positive_where_it_is_better():
    # the paper's table: polyp S_alpha 91.2 -> 92.0 (Kvasir), 90.7 -> 91.3 (CVC-612); SBU BER 2.74 -> 2.54 (lower)
    assert paper_gains("synth_polyp", "test", "s_alpha") == pytest.approx({"Kvasir": 0.8, "CVC-612": 0.6})
    assert paper_gains("polyp", "test_cvc", "s_alpha") == pytest.approx({"CVC-612": 0.6})
    assert paper_gains("synth_sbu", "test", "ber") == pytest.approx({"SBU": 0.2})
    assert paper_gains("synth_road", "test", "mae") == {} and paper_gains("own_data", "test", "iou") == {}
