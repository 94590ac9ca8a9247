"""own_data_readings: one run on your own data against predicting background everywhere, counted from the mask files."""
from pathlib import Path

import numpy as np
from PIL import Image

from convlora_lite.data.own import own_spec, write_own_data
from convlora_lite.reports.own_data_readings import SMALL_TEST_SPLIT, own_data_readings
from convlora_lite.reports.readings import NO_FLOOR
from convlora_lite.training import TrainConfig
from convlora_lite.training.run_data import own_datasets
from convlora_lite.training.rundir import RunDir


def _own_run(tmp_path, fake_run, iou):
    """A finished run on a 12-image own folder (its split recorded as training records it) scoring test ``iou``."""
    data_dir = write_own_data(tmp_path / "my_data", "synth_polyp", n_images=12, image_size=64)
    path = fake_run(tmp_path / "run", "own_my_data", "lora", 1, test={"test": {"iou": iou, "dice": 0.5}},
                    data_dir=str(data_dir))
    own_datasets(own_spec(data_dir), TrainConfig.of_run(path), RunDir(path))
    return data_dir, path


def test_the_floor_is_the_share_of_empty_test_masks_and_a_small_split_is_called_small(tmp_path, fake_run):
    data_dir, path = _own_run(tmp_path, fake_run, iou=0.4)
    keys = RunDir(path).read_split()["splits"]["test"]
    empty = [not np.asarray(Image.open(data_dir / "masks" / Path(key).name)).any() for key in keys]
    floor = round(100 * float(np.mean(empty)), 1)  # all-background IoU per image: 1 on an empty mask, else 0
    (line,) = own_data_readings(path)
    assert line.startswith(f"own_my_data/test: lora scores iou 40.0 on {len(keys)} image")
    assert f"against {floor} for predicting background everywhere: it beats that floor." in line
    assert f"one image moves the mean by up to {100 / len(keys):.0f} points" in line
    assert len(keys) < SMALL_TEST_SPLIT


def test_a_run_at_the_floor_is_read_as_not_beating_it(tmp_path, fake_run):
    _, path = _own_run(tmp_path, fake_run, iou=0.0)
    assert "it does NOT beat that floor." in own_data_readings(path)[0]


def test_without_the_data_the_floor_is_said_to_be_unscored(tmp_path, fake_run):
    data_dir, path = _own_run(tmp_path, fake_run, iou=0.4)
    for file in sorted(data_dir.rglob("*"), reverse=True):
        file.unlink() if file.is_file() else file.rmdir()
    data_dir.rmdir()
    assert NO_FLOOR in own_data_readings(path)[0]
