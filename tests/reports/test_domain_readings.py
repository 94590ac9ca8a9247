"""The domain notebooks' readings of their baselines and figures, on hand-written runs and masks whose answers are
counted by hand in the comments."""
from types import SimpleNamespace

import numpy as np
import pandas as pd
import torch

from convlora_lite.reports.domain_readings import (
    against_baselines,
    encoder_reading,
    error_reading,
    grid_reading,
    oracle_reading,
    outline_on_grid,
)


def _runs(values: dict, dataset="synth_polyp", split="test") -> pd.DataFrame:
    """``collect_runs``-shaped rows: ``{(method, metric): [value per seed]}`` (fractions)."""
    return pd.DataFrame([dict(dataset=dataset, method=method, seed=seed, split=split, metric=metric, value=value)
                         for (method, metric), seeds in values.items() for seed, value in enumerate(seeds)])


def test_encoder_reading_weighs_each_adapters_gain_over_decoder_only_against_the_spread():
    runs = _runs({("decoder_only", "sa"): [0.60, 0.62, 0.64],  # 62.0, std 2.0
                  ("lora", "sa"): [0.80, 0.82, 0.84],  # 82.0: +20.0, beyond std 2.0
                  ("conv_lora", "sa"): [0.61, 0.63, 0.65]})  # 63.0: +1.0, within std 2.0
    (line,) = encoder_reading(runs)
    assert line == ("synth_polyp/test sa: decoder-only (the mask decoder alone) 62.0; with an encoder adapter: "
                    "lora 82.0 (better by 20.0; larger than the spread, std up to 2.0); "
                    "conv_lora 63.0 (better by 1.0; within the spread, std up to 2.0).")
    # BER: lower is better, so an adapter below decoder-only is better; one seed: no conclusion.
    (ber,) = encoder_reading(_runs({("decoder_only", "ber"): [0.10], ("lora", "ber"): [0.07]}))
    assert ber.endswith("ber, lower is better: decoder-only (the mask decoder alone) 10.0; with an encoder adapter: "
                        "lora 7.0 (better by 3.0; one seed: no conclusion).")
    assert encoder_reading(_runs({("lora", "sa"): [0.8], ("conv_lora", "sa"): [0.7]})) == []


def test_encoder_reading_reads_no_gain_from_a_method_at_the_all_background_floor():
    # Trans10K's failure: the adapters sit at the all-background accuracy 74.2 (74.3, within 0.5), decoder-only
    # below it (71.5): the 2.8 between them is not a gain; on mIoU decoder-only 7.1 clears the floor 6.2.
    runs = _runs({("decoder_only", "acc"): [0.715], ("lora", "acc"): [0.743],
                  ("decoder_only", "miou"): [0.071], ("lora", "miou"): [0.062]})
    acc, miou = encoder_reading(runs, {"test": {"acc": 0.742, "miou": 0.062}})
    floor = "(at the floor: predicting background everywhere scores 74.2)"
    assert acc == (f"synth_polyp/test acc: decoder-only (the mask decoder alone) 71.5 {floor}; with an encoder "
                   f"adapter: lora 74.3 {floor}. A method at the all-background floor learned nothing on this "
                   "metric: no gain is read from it.")
    assert miou.startswith("synth_polyp/test miou: decoder-only (the mask decoder alone) 7.1; with an encoder "
                           "adapter: lora 6.2 (at the floor: predicting background everywhere scores 6.2).")
    # Both clear the floor: the gain is read as before.
    (line,) = encoder_reading(_runs({("decoder_only", "acc"): [0.80], ("lora", "acc"): [0.90]}),
                              {"test": {"acc": 0.742}})
    assert "lora 90.0 (better by 10.0; one seed: no conclusion)" in line and "floor" not in line


def test_encoder_reading_takes_the_difference_of_the_rounded_means():
    # 64.94 and 84.06 print as 64.9 and 84.1: the gain printed is 19.2, not the unrounded 19.12.
    (line,) = encoder_reading(_runs({("decoder_only", "sa"): [0.6494], ("lora", "sa"): [0.8406]}))
    assert "decoder-only (the mask decoder alone) 64.9" in line and "lora 84.1 (better by 19.2;" in line


def _zero_shot(box, filled, objects=1.0):
    return pd.DataFrame({"sa": [box, 50.0, filled], "images": [10] * 3, "objects": [objects] * 3},
                        index=["one box", "one point", "filled box (no model)"])


def test_oracle_reading_places_the_fine_tuned_model_against_the_oracle_and_the_filled_boxes():
    runs = _runs({("lora", "sa"): [0.84], ("conv_lora", "sa"): [0.82]})
    intro, beats = oracle_reading(_zero_shot(80.0, 75.0, objects=2.5), runs, "test")
    assert "(2.5 object(s) per image, one box or point each)" in intro and "score 75.0 sa" in intro
    assert beats.startswith("Without any prompt, the best fine-tuned model, lora (84.0), beats SAM given the oracle "
                            "boxes (80.0, by 4.0) and the filled boxes")
    between = oracle_reading(_zero_shot(90.0, 75.0), runs, "test")[1]
    assert between.startswith("The best fine-tuned model, lora (84.0), lies between the filled boxes (75.0) and SAM")
    below = oracle_reading(_zero_shot(90.0, 84.0), runs, "test")[1]  # a tie with the filled boxes: not above them
    assert below.startswith("The best fine-tuned model, lora (84.0), does not beat the filled boxes (84.0)")
    assert "It does beat" not in below
    # Polyp's case: above the oracle box (82.3) but below the filled boxes (84.5): the filled boxes decide.
    polyp = oracle_reading(_zero_shot(82.3, 84.5), runs, "test")[1]
    assert polyp.startswith("The best fine-tuned model, lora (84.0), does not beat the filled boxes (84.5)")
    assert polyp.endswith("It does beat SAM given the oracle boxes (82.3): here the boxes alone make a better mask "
                          "than SAM makes of them.")
    assert oracle_reading(_zero_shot(90.0, 84.0), runs, "val") == []


def test_error_reading_counts_misses_false_positives_and_their_distance_to_the_border():
    mask, pred = torch.zeros(1, 10, 10), torch.zeros(1, 10, 10)
    mask[0, 2:6, 2:6] = 1  # 16 object pixels, 84 background
    pred[0, 2:6, 3:7] = 0.9  # shifted right: column 2 missed (4 px), column 6 added (4 px), both next to the border
    pred[0, 8:10, 8:10] = 0.9  # 4 px added far away: (8, 8) is sqrt(18) > 3 px from the nearest object pixel (5, 5)
    # wrong 12: misses 4 (33 %), false positives 8 (67 %); near the border 8 of 12 (67 %);
    # false positives 8 of 84 background pixels (9.5 %), 8 / 16 = 0.50 times the object's area.
    assert error_reading(mask, pred) == (
        "In these 1 images, 33 % of the wrong pixels are misses (blue) and 67 % false positives (red); 67 % lie "
        "within 3 px of the true border, the rest farther away (parts or objects missed or added whole). The false "
        "positives cover 9.5 % of the background (the rate a balanced error rate counts) and 0.50 times the "
        "foreground's area.")
    assert error_reading(mask, mask) == "In these 1 images every pixel is right."


def test_error_reading_multiclass_splits_the_wrong_pixels_by_kind():
    mask = torch.tensor([[[0, 0, 1, 1], [2, 2, 255, 0]]])
    pred = torch.tensor([[[0, 1, 0, 1], [2, 1, 0, 0]]])
    # object pixels 4 (the 255 is ignored), right 2 (50 %); wrong 3: object -> background 1 (the first 1),
    # background -> object 1, object -> another class 1 (the second 2 labelled 1).
    assert error_reading(mask, pred, multiclass=True) == (
        "In these 1 images, 50 % of the object pixels get their class. Of the wrong pixels, 33 % are objects labelled "
        "background, 33 % background labelled as an object, 33 % objects given another class.")


def test_outline_on_grid_counts_the_edges_within_a_pixel_of_the_token_grid():
    loose = np.zeros((16, 16), dtype=bool)
    loose[3:7, 3:7] = True  # edges at positions 3 (3 px from the 8-px grid) and 7 (1 px): 8 of 16 changes near it
    assert outline_on_grid(loose, 8) == (8, 16)
    token = np.zeros((16, 16), dtype=bool)
    token[8:16, 0:8] = True  # one whole token: its 16 changes all sit at position 8
    assert outline_on_grid(token, 8) == (16, 16)
    assert outline_on_grid(np.zeros((16, 16), dtype=bool), 8) == (0, 0)
    masks = torch.from_numpy(loose[None].astype(np.float32))
    line = grid_reading(masks, {"lora": torch.from_numpy(token[None] * 0.9), "conv_lora": torch.zeros(1, 16, 16)}, 8)
    assert line == ("Share of each mask outline within 1 px of the 8-px token grid (a mask drawn in whole tokens: "
                    "100 %): ground truth 50 %, lora 100 %, conv_lora: no outline.")


def test_against_baselines_reads_a_tasks_run_directories(tmp_path, fake_run):
    paths = [fake_run(tmp_path / m, "synth_polyp", m, 0, test={"test": {"s_alpha": v, "e_phi": v}})
             for m, v in (("decoder_only", 0.6), ("lora", 0.8))]
    task = SimpleNamespace(run_paths=paths, zero_shot=None, spec=SimpleNamespace(test_splits=["test"]),
                           baseline=lambda split: {"s_alpha": 0.45, "e_phi": 0.25})
    text = against_baselines(task)
    assert text.startswith("Against the baselines (computed from the run directories):\n- ")
    assert ("decoder-only (the mask decoder alone) 60.0; with an encoder adapter: lora 80.0 (better by 20.0; one "
            "seed: no conclusion)") in text
    assert text.count("\n- ") == 2  # one line per metric (S_alpha, E_phi), no zero-shot line
    task.run_paths = paths[1:]
    assert against_baselines(task).startswith("No baseline to read here")
