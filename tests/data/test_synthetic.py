"""The synthetic analogs: every task generates, is deterministic, loads, and is non-trivial."""
import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from PIL import Image  # noqa: E402

from convlora_lite.data.datasets import build_dataset  # noqa: E402
from convlora_lite.data.registry import TRANS10K_CLASSES, get_dataset_spec  # noqa: E402
from convlora_lite.data.synthetic import SYNTHETIC_TASKS, generate_synthetic  # noqa: E402
from convlora_lite.errors import ConfigError  # noqa: E402
from convlora_lite.plots.figures import preview_figure  # noqa: E402

SMALL = dict(image_size=128, n_train=6, n_val=2, n_test=2)


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    """Every analog at 128 px, generated once for the module: name -> (root, dataset dir)."""
    root = tmp_path_factory.mktemp("synth")
    return {task: (root, generate_synthetic(task, root, **SMALL)) for task in SYNTHETIC_TASKS}


def _files(directory):
    return {path.relative_to(directory): path.read_bytes()
            for path in sorted(directory.rglob("*")) if path.is_file()}


@pytest.mark.parametrize("task", SYNTHETIC_TASKS)
def test_every_analog_loads_through_build_dataset(generated, task):
    root, directory = generated[task]
    spec = get_dataset_spec(f"synth_{task}")
    assert directory == spec.dataset_dir(root)
    for split, count in (("train", 6), ("val", 2), ("test", 2)):
        dataset = build_dataset(spec, split, root, image_size=32, train=split == "train")
        assert len(dataset) == count
        item = dataset[0]
        assert item["image"].shape == (3, 32, 32)
        assert item["mask"].shape == (32, 32)
        image, _ = dataset.load_pair(count - 1)
        assert image.size == (128, 128)


@pytest.mark.parametrize("task", [t for t in SYNTHETIC_TASKS if t != "trans10k"])
def test_binary_analogs_have_non_trivial_foreground(generated, task):
    root, _ = generated[task]
    dataset = build_dataset(f"synth_{task}", "train", root, image_size=128, train=False)
    fractions = [labels.mean() for _, labels in map(dataset.load_pair, range(len(dataset)))]
    assert all(0.0 < f < 1.0 for f in fractions), fractions  # no image empty or full
    assert 0.005 < np.mean(fractions) < 0.6, fractions


def test_binary_layout_is_the_official_csv_layout(generated):
    root, directory = generated["polyp"]
    assert directory == root / "synth_polyp" / "synth_polyp"
    frame = pd.read_csv(directory / "train.csv")
    assert list(frame.columns) == ["Unnamed: 0", "image", "label"]  # leading index, as the zips
    mask = np.asarray(Image.open(directory / frame["label"][0]))
    assert set(np.unique(mask)) == {0, 255}


def test_trans10k_analog_has_all_twelve_classes_in_its_layout(generated):
    root, directory = generated["trans10k"]
    assert sorted(p.name for p in directory.iterdir() if p.is_dir()) == ["test", "train", "validation"]
    masks = sorted((directory / "train" / "masks_12").glob("*_mask.png"))
    assert len(masks) == 6 and all(Image.open(m).mode == "P" for m in masks)
    images = sorted((directory / "train" / "images").glob("*.jpg"))
    assert [image.stem + "_mask" for image in images] == [mask.stem for mask in masks]
    dataset = build_dataset("synth_trans10k", "train", root, image_size=128, train=False)
    present = set()
    for index in range(len(dataset)):
        labels = dataset.load_pair(index)[1]
        assert 0.0 < (labels > 0).mean() < 1.0
        present |= set(np.unique(labels).tolist())
    assert present == set(range(len(TRANS10K_CLASSES)))


def test_same_seed_gives_identical_bytes_and_another_seed_differs(generated, tmp_path):
    for task in ("camo", "trans10k"):
        _, directory = generated[task]
        again = generate_synthetic(task, tmp_path / "again", **SMALL)
        assert _files(again) == _files(directory)
        other = generate_synthetic(task, tmp_path / "other", **SMALL, seed=1)
        differing = [name for name, data in _files(other).items() if _files(directory).get(name) != data]
        assert any(str(name).endswith((".png", ".jpg")) for name in differing)


def test_regenerating_replaces_the_old_copy(tmp_path):
    generate_synthetic("synth_leaf", tmp_path, image_size=64, n_train=5, n_val=1, n_test=1)
    directory = generate_synthetic("leaf", tmp_path, image_size=64, n_train=2, n_val=1, n_test=1)
    assert len(list((directory / "images").glob("*.png"))) == 4
    assert len(build_dataset("synth_leaf", "train", tmp_path, image_size=32, train=False)) == 2


def test_unknown_analog_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="synth_polyp, synth_isic2017"):
        generate_synthetic("synth_cityscapes", tmp_path)


def test_preview_figure_shows_images_over_masks(generated):
    root, _ = generated["sbu"]
    figure = preview_figure("synth_sbu", root, n=3)
    try:
        assert len(figure.axes) == 6
        assert figure.axes[0].images[0].get_array().shape == (128, 128, 3)
        assert figure.axes[3].images[0].get_array().shape == (128, 128)
    finally:
        plt.close(figure)
