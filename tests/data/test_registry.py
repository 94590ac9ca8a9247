"""The dataset registry: the contract's fields, the official recipe per task, the analogs."""
from pathlib import Path

import pytest

from convlora_lite.data.registry import DATASETS, TRANS10K_CLASSES, get_dataset_spec
from convlora_lite.errors import ConfigError

REAL = ("polyp", "isic2017", "camo", "sbu", "leaf", "road", "trans10k")

# (zip folder, loss, select metric, mode, epochs, lr): run_semantic_segmentation.py of the
# AutoGluon Conv-LoRA example, get_default_training_setting.
OFFICIAL_RECIPE = {
    "polyp": ("polyp", "structure", "s_alpha", "max", 30, 1e-4),
    "isic2017": ("isic2017", "structure", "iou", "max", 30, 1e-4),
    "camo": ("camo_sem_seg", "structure", "s_alpha", "max", 20, 1e-4),
    "sbu": ("SBU-shadow", "balanced_bce", "ber", "min", 10, 1e-4),
    "leaf": ("leaf_disease_segmentation", "structure", "iou", "max", 30, 3e-4),
    "road": ("road_segmentation", "structure", "iou", "max", 20, 3e-4),
}


def test_names_are_the_seven_tasks_and_their_analogs():
    assert set(DATASETS) == set(REAL) | {f"synth_{n}" for n in REAL} | {"synth_prior_texture", "synth_prior_colour"}
    assert list(DATASETS)[:7] == list(REAL)


@pytest.mark.parametrize("name", OFFICIAL_RECIPE)
def test_binary_tasks_follow_the_official_script(name):
    spec = get_dataset_spec(name)
    folder, loss, metric, mode, epochs, lr = OFFICIAL_RECIPE[name]
    assert spec.url == f"https://automl-mm-bench.s3.amazonaws.com/semantic_segmentation/{folder}.zip"
    assert (spec.folder, spec.loss, spec.select_metric, spec.select_mode, spec.epochs, spec.lr) == (
        folder, loss, metric, mode, epochs, lr)
    assert spec.task == "binary" and spec.layout == "csv" and spec.classes == ("background", "foreground")
    assert spec.dataset_dir("R") == Path("R") / folder / folder
    assert spec.splits["train"] == "train.csv" and spec.splits["val"] == "val.csv"
    assert spec.select_metric in spec.metrics


def test_test_splits_and_their_csv_files():
    assert get_dataset_spec("polyp").test_splits == ("test_kvasir", "test_cvc")
    assert get_dataset_spec("polyp").split_path("R", "test_cvc") == Path("R/polyp/polyp/test_CVC-ClinicDB.csv")
    assert get_dataset_spec("polyp").splits["test_kvasir"] == "test_Kvasir.csv"
    assert get_dataset_spec("camo").splits["test"] == "test_CAMO.csv"
    for name in ("isic2017", "sbu", "leaf", "road"):
        assert get_dataset_spec(name).splits["test"] == "test.csv"
        assert get_dataset_spec(name).test_splits == ("test",)


def test_metrics_per_task():
    assert get_dataset_spec("polyp").metrics == ("s_alpha", "e_phi")
    assert get_dataset_spec("camo").metrics == ("s_alpha", "e_phi", "f_beta_w")
    assert get_dataset_spec("isic2017").metrics == ("iou", "dice")
    assert get_dataset_spec("sbu").metrics == ("ber",)
    assert get_dataset_spec("trans10k").metrics == ("acc", "miou", "iou_per_class")


def test_trans10k_spec():
    spec = get_dataset_spec("trans10k")
    assert spec.task == "multiclass" and spec.layout == "trans10k" and spec.loss == "set"
    assert (spec.select_metric, spec.select_mode) == ("miou", "max")
    assert spec.classes == TRANS10K_CLASSES and spec.num_classes == 12 and spec.classes[0] == "background"
    assert spec.classes[1:] == ("shelf", "jar", "freezer", "window", "door", "eyeglass", "cup",
                                "wall", "bowl", "bottle", "box")
    assert spec.gdrive_id and spec.url is None
    assert spec.dataset_dir("R") == Path("R/trans10k")
    assert spec.split_path("R", "val") == Path("R/trans10k/validation")


@pytest.mark.parametrize("name", REAL)
def test_synthetic_analog_keeps_task_layout_and_recipe(name):
    real, synth = get_dataset_spec(name), get_dataset_spec(f"synth_{name}")
    same = ("task", "layout", "classes", "metrics", "loss", "select_metric", "select_mode", "domain")
    assert {f: getattr(synth, f) for f in same} == {f: getattr(real, f) for f in same}
    assert synth.synthetic and not real.synthetic
    assert set(synth.splits) == {"train", "val", "test"} and synth.test_splits == ("test",)
    assert synth.url is None and synth.gdrive_id is None and synth.sha256 is None
    assert synth.folder == synth.name


def test_specs_are_frozen():
    with pytest.raises(AttributeError):
        get_dataset_spec("polyp").epochs = 1


def test_unknown_name_lists_the_known_ones():
    with pytest.raises(ConfigError, match="known datasets: polyp, isic2017") as err:
        get_dataset_spec("kvasir")
    assert "synth_trans10k" in str(err.value)


def test_unknown_split_is_a_config_error():
    with pytest.raises(ConfigError, match="test_kvasir"):
        get_dataset_spec("polyp").split_path("R", "test")
