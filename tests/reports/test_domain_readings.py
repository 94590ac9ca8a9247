"""The domain notebooks' readings of their baselines and figures, on hand-written runs and masks whose answers are
counted by hand in the comments."""
from types import SimpleNamespace

import numpy as np
import pandas as pd
import torch

from convlora_lite.reports.domain_readings import (
    against_baselines,
    error_reading,
    grid_reading,
    oracle_reading,
    outline_on_grid,
)


def _runs(values: dict, dataset="synth_polyp", split="test") -> pd.DataFrame:
    """``collect_runs``-shaped rows: ``{(method, metric): [value per seed]}`` (fractions)."""
    return pd.DataFrame([dict(dataset=dataset, method=method, seed=seed, split=split, metric=metric, value=value)
                         for (method, metric), seeds in values.items() for seed, value in enumerate(seeds)])


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
    assert "synth_polyp/test s_alpha, no gain can be read with an interval here: lora 80.0 vs decoder_only 60.0: " \
        "better by 20.0 (one seed: no interval)." in text
    assert text.count("\n- ") == 1  # the selection metric (S_alpha) only, no zero-shot line
    task.run_paths = paths[1:]
    assert against_baselines(task).startswith("No baseline to read here")
