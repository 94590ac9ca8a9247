"""Own data (convlora_lite.data.own): the four shapes, the seeded split, verify's problems, the bad-input errors."""
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from convlora_lite.cli import main
from convlora_lite.data.own import (
    CocoSegmentationDataset,
    detect_shape,
    make_split,
    own_spec,
    scan,
    split_keys,
    verify_own_data,
    write_own_data,
)
from convlora_lite.errors import DataError


def _small(tmp_path, shape="folder", analog="synth_polyp", n_images=10):
    return write_own_data(tmp_path / f"{analog}_{shape}", analog, shape=shape, n_images=n_images, image_size=32)


@pytest.mark.parametrize("shape", ["folder", "split_folders", "csv", "coco"])
@pytest.mark.parametrize("analog", ["synth_polyp", "synth_trans10k"])
def test_each_shape_is_detected_verified_and_split(tmp_path, shape, analog):
    path = _small(tmp_path, shape, analog)
    assert detect_shape(path) == shape
    spec = own_spec(path)
    assert spec.task == ("binary" if analog == "synth_polyp" else "multiclass")
    assert spec.num_classes == (2 if analog == "synth_polyp" else 12)
    assert (spec.loss, spec.select_metric) == (("structure", "iou") if spec.task == "binary" else ("set", "miou"))
    report = verify_own_data(path)
    assert report.ok, report.problems
    assert report.counts == {"train": 8, "val": 1, "test": 1}


def test_coco_masks_are_the_masks_they_were_drawn_from(tmp_path):
    folder = _small(tmp_path, "folder", "synth_trans10k")
    coco = _small(tmp_path, "coco", "synth_trans10k")
    found = scan(coco)
    spec = own_spec(coco, found=found)
    dataset = CocoSegmentationDataset(found.samples, found.coco, task="multiclass", num_classes=spec.num_classes,
                                      image_size=32, train=False, origin="test")
    for i, sample in enumerate(found.samples[:3]):
        expected = np.asarray(Image.open(folder / "masks" / f"{sample.image.stem}.png"))
        assert (dataset.load_pair(i)[1] == expected).all()


def test_the_split_is_seeded_80_10_10_and_needs_three_images():
    keys = [f"images/{i:03d}.png" for i in range(50)]
    split = make_split(keys, seed=3)
    assert [len(split[s]) for s in ("train", "val", "test")] == [40, 5, 5]
    assert split == make_split(list(reversed(keys)), seed=3) and split != make_split(keys, seed=4)
    assert sorted(sum(split.values(), [])) == keys
    with pytest.raises(DataError, match="too few"):
        make_split(keys[:2], seed=0)


def test_a_csv_split_column_is_the_split(tmp_path):
    csv_path = _small(tmp_path, "csv")
    lines = csv_path.read_text().splitlines()
    rows = [f"{line},{'val' if i % 5 == 0 else 'train'}" for i, line in enumerate(lines[1:])]
    csv_path.write_text("\n".join([lines[0] + ",split", *rows]) + "\n")
    keys = split_keys(scan(csv_path), seed=0)
    assert set(keys) == {"train", "val"} and len(keys["val"]) == 2
    assert own_spec(csv_path).test_splits == ()


def _plant_problems(folder: Path) -> None:
    images, masks = folder / "images", folder / "masks"
    (masks / "orphan.png").write_bytes((masks / "image_0000.png").read_bytes())          # mask without image
    (images / "lonely.png").write_bytes((images / "image_0001.png").read_bytes())       # image without mask
    (images / "image_0002.jpg").write_bytes((images / "image_0002.png").read_bytes())   # duplicated stem
    (images / "image_0003.png").write_bytes(b"not a png")                               # unreadable
    Image.new("L", (20, 20)).save(masks / "image_0004.png")                             # size mismatch (+ empty)
    Image.new("L", (32, 32)).save(masks / "image_0005.png")                             # empty mask


def test_verify_lists_every_problem(tmp_path, capsys):
    folder = _small(tmp_path)
    _plant_problems(folder)
    text = "\n".join(verify_own_data(folder).problems)
    for expected in ("match no image", "orphan.png", "have no mask", "lonely.png", "duplicated stem 'image_0002'",
                     "cannot read", "image_0003.png", "size mismatch", "image_0004", "empty mask", "image_0005"):
        assert expected in text, expected
    assert main(["data", "verify", "--data-dir", str(folder)]) == 1
    assert "problem(s)" in capsys.readouterr().out


def test_verify_lists_class_values_outside_classes_txt_and_too_few_images(tmp_path):
    folder = _small(tmp_path, "folder", "synth_trans10k")
    mask = folder / "masks" / "image_0000.png"
    values = np.asarray(Image.open(mask)).copy()
    values[0, 0] = 40
    Image.fromarray(values).save(mask)  # grayscale index mask
    problems = verify_own_data(folder).problems
    assert any("values [40]" in p and "image_0000" in p for p in problems), problems
    tiny = tmp_path / "tiny"
    for sub in ("images", "masks"):
        (tiny / sub).mkdir(parents=True)
    for i in range(2):
        Image.new("RGB", (8, 8)).save(tiny / "images" / f"{i}.png")
        Image.new("L", (8, 8), 255).save(tiny / "masks" / f"{i}.png")
    assert any("too few" in p for p in verify_own_data(tiny).problems)


def _train(data_dir, tmp_path, *extra):
    return main(["train", "--data-dir", str(data_dir), "--method", "decoder_only", "--preset", "smoke", "--model",
                 "test_tiny", "--checkpoint", "none", "--output-dir", str(tmp_path / "run"), *extra])


def test_bad_own_data_exits_2_with_a_clear_message(tmp_path, capsys):
    empty = tmp_path / "empty"
    (empty / "images").mkdir(parents=True)
    (empty / "masks").mkdir()
    assert _train(empty, tmp_path) == 2
    assert "holds no images" in capsys.readouterr().err

    folder = _small(tmp_path)
    for mask in (folder / "masks").iterdir():
        mask.rename(mask.with_name(f"other_{mask.name}"))
    assert _train(folder, tmp_path) == 2
    err = capsys.readouterr().err
    assert "match no image" in err and "data verify --data-dir" in err

    classes = _small(tmp_path, "folder", "synth_trans10k", n_images=4)
    (classes / "classes.txt").write_text("background\nshelf\njar\n")  # the masks hold ids up to 11
    assert _train(classes, tmp_path / "c", "--epochs", "1") == 2
    assert "outside the declared classes 0..2" in capsys.readouterr().err

    (classes / "classes.txt").unlink()  # index masks read as binary: say how to declare the classes
    assert _train(classes, tmp_path / "e") == 2
    assert "classes.txt" in capsys.readouterr().err

    coco = _small(tmp_path, "coco", n_images=10)
    data = json.loads(coco.read_text())
    data["annotations"] = []
    coco.write_text(json.dumps(data))
    assert _train(coco, tmp_path / "d") == 2
    assert "no annotations" in capsys.readouterr().err

    assert main(["train", "--method", "lora", "--preset", "smoke"]) == 2
    assert "--data-dir" in capsys.readouterr().err
