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


@pytest.mark.parametrize("segmentation", ["rle", "polygon"])
def test_coco_masks_are_the_masks_they_were_drawn_from(tmp_path, segmentation):
    folder = _small(tmp_path, "folder", "synth_trans10k")
    coco = write_own_data(tmp_path / "coco", "synth_trans10k", shape="coco", n_images=10, image_size=32,
                          segmentation=segmentation)
    annotations = json.loads(coco.read_text())["annotations"]
    if segmentation == "polygon":  # polygons indeed, several to an object
        assert all(isinstance(a["segmentation"], list) for a in annotations)
        assert max(len(a["segmentation"]) for a in annotations) > 1
    found = scan(coco)
    spec = own_spec(coco, found=found)
    dataset = CocoSegmentationDataset(found.samples, found.coco, task="multiclass", num_classes=spec.num_classes,
                                      image_size=32, train=False, origin="test")
    for i, sample in enumerate(found.samples):
        expected = np.asarray(Image.open(folder / "masks" / f"{sample.image.stem}.png"))
        assert (dataset.load_pair(i)[1] == expected).all()


# Hand-made COCO files, on images 12 wide and 10 high. pycocotools' rasteriser treats pixel (x, y) as the unit
# square from (x, y) to (x + 1, y + 1): a polygon with integer corners and axis-aligned edges fills exactly
# the pixels whose squares it covers, so the rectangle from (x0, y0) to (x1, y1) fills rows y0 .. y1 - 1 and
# columns x0 .. x1 - 1 (checked by hand against pycocotools 2.0.11: no pixel on either side of an edge is
# added or lost). The expected masks below are numpy slices, independent of pycocotools.
WIDTH, HEIGHT = 12, 10
JAR, SHELF = 3, 7  # category ids, not 1 and 2: class = 1 + rank by id -> jar 1, shelf 2


def _rect(x0, y0, x1, y1):
    return [x0, y0, x1, y0, x1, y1, x0, y1]


def _uncompressed_rle(pixels):
    """COCO's uncompressed RLE of a boolean mask: run lengths over the column-major pixels, zeros first."""
    flat = pixels.flatten(order="F")
    edges = np.flatnonzero(np.diff(flat.astype(np.int8))) + 1
    counts = np.diff(np.concatenate([[0], edges, [flat.size]])).tolist()
    return {"size": list(pixels.shape), "counts": ([0] if flat[0] else []) + counts}


def _write_hand_coco(folder: Path, annotations: list) -> Path:
    (folder / "images").mkdir(parents=True)
    for image_id in (1, 2, 3):
        Image.new("RGB", (WIDTH, HEIGHT), (image_id * 40, 90, 20)).save(folder / "images" / f"photo_{image_id}.png")
    data = {"images": [{"id": i, "file_name": f"photo_{i}.png", "width": WIDTH, "height": HEIGHT} for i in (1, 2, 3)],
            "annotations": [{"iscrowd": 0, **a} for a in annotations],
            "categories": [{"id": SHELF, "name": "shelf"}, {"id": JAR, "name": "jar"}]}
    path = folder / "annotations.json"
    path.write_text(json.dumps(data))
    return path


def _hand_made_cases():
    """(annotations, multi-class masks expected for images 1, 2, 3)."""
    expected = np.zeros((3, HEIGHT, WIDTH), dtype=np.uint8)
    crowd = np.zeros((HEIGHT, WIDTH), dtype=bool)
    crowd[6:9, 0:5] = True
    annotations = [
        # image 1: a shelf band, a jar of two polygons (one on the shelf: smaller objects are painted last)
        dict(id=1, image_id=1, category_id=SHELF, segmentation=[_rect(0, 0, 12, 4)], area=48.0),
        dict(id=2, image_id=1, category_id=JAR, segmentation=[_rect(1, 1, 4, 3), _rect(6, 5, 9, 8)], area=15.0),
        # image 2: a non-convex L-shaped jar with float coordinates, and a crowd of shelves as uncompressed RLE
        dict(id=3, image_id=2, category_id=JAR, segmentation=[[1.0, 1.0, 5.0, 1.0, 5.0, 3.0, 3.0, 3.0, 3.0, 6.0,
                                                               1.0, 6.0]], area=14.0),
        dict(id=4, image_id=2, category_id=SHELF, segmentation=_uncompressed_rle(crowd), area=15.0, iscrowd=1),
        # image 3: a shelf reaching past the image's right and bottom edges (clipped to the image)
        dict(id=5, image_id=3, category_id=SHELF, segmentation=[_rect(8, 7, 20, 15)], area=12.0),
    ]
    expected[0, 0:4, :] = 2
    expected[0, 1:3, 1:4] = 1
    expected[0, 5:8, 6:9] = 1
    expected[1, 1:3, 1:5] = 1
    expected[1, 3:6, 1:3] = 1
    expected[1][crowd] = 255
    expected[2, 7:10, 8:12] = 2
    return annotations, expected


@pytest.mark.parametrize("task", ["multiclass", "binary"])
def test_coco_polygons_and_uncompressed_rle_draw_the_pixels_they_cover(tmp_path, task):
    annotations, expected = _hand_made_cases()
    path = _write_hand_coco(tmp_path / "hand", annotations)
    found = scan(path)
    assert found.problems == []
    spec = own_spec(path, found=found)
    assert (spec.task, spec.classes) == ("multiclass", ("background", "jar", "shelf"))
    report = verify_own_data(path, task=task)
    assert report.problems == [] and report.counts == {"train": 1, "val": 1, "test": 1}
    dataset = CocoSegmentationDataset(found.samples, found.coco, task=task, num_classes=spec.num_classes,
                                      image_size=32, train=False, origin="test")
    assert [s.image.name for s in found.samples] == ["photo_1.png", "photo_2.png", "photo_3.png"]
    for i in range(3):
        labels = dataset.load_pair(i)[1]
        # binary: any object, crowds included
        assert (labels == (expected[i] if task == "multiclass" else (expected[i] > 0).astype(np.uint8))).all(), i


BAD_SEGMENTATIONS = {
    "two points": ([[1, 1, 4, 1]], "has 2 point(s); a polygon needs at least 3"),  # pycocotools: a bbox, TypeError
    "odd": ([[1, 1, 4, 1, 4, 3, 1]], "odd number of coordinates (7)"),
    "flat": ([1, 1, 4, 1, 4, 3, 1, 3], "wrap it in another list"),
    "empty": ([], "empty list"),
    "not numbers": ([["1", 1, 4, 1, 4, 3]], "not a list of numbers"),
    "string": ("1 1 4 1 4 3", "its segmentation is a str"),
    "none": (None, "has no segmentation"),
    "rle of another size": ({"size": [WIDTH, HEIGHT], "counts": [WIDTH * HEIGHT]}, "but the image is 12x10"),
    "rle counts short": ({"size": [HEIGHT, WIDTH], "counts": [5, 5, 80]}, "sum to 90, not height * width = 120"),
}


@pytest.mark.parametrize("case", BAD_SEGMENTATIONS)
def test_a_malformed_coco_segmentation_names_the_file_and_the_annotation(tmp_path, capsys, case):
    segmentation, says = BAD_SEGMENTATIONS[case]
    annotations = [dict(id=i, image_id=i, category_id=JAR, segmentation=[_rect(1, 1, 4, 3)]) for i in (1, 2, 3)]
    path = _write_hand_coco(tmp_path / "bad", [*annotations, dict(id=42, image_id=2, category_id=JAR,
                                                                  segmentation=segmentation)])
    expected = f"{path.resolve()}: annotation 42 (image photo_2.png): "
    found = scan(path)
    assert len(found.problems) == 1 and found.problems[0].startswith(expected) and says in found.problems[0], \
        found.problems
    problems = verify_own_data(path).problems
    assert problems == found.problems  # listed once, not again when the mask is drawn
    dataset = CocoSegmentationDataset(found.samples, found.coco, task="multiclass", num_classes=3, image_size=32,
                                      train=False, origin="test")
    with pytest.raises(DataError, match="annotation 42") as error:
        dataset.load_pair(1)
    assert str(error.value) == found.problems[0]
    if case == "two points":
        assert _train(path, tmp_path) == 2
        err = capsys.readouterr().err
        assert expected in err and "data verify --data-dir" in err


def test_a_coco_annotation_of_an_unknown_category_without_an_id_or_with_a_used_id_is_a_problem(tmp_path):
    annotations = [dict(id=i, image_id=i, category_id=JAR, segmentation=[_rect(1, 1, 4, 3)]) for i in (1, 2, 3)]
    path = _write_hand_coco(tmp_path / "cat", [*annotations, dict(id=9, image_id=3, category_id=5,
                                                                  segmentation=[_rect(1, 1, 4, 3)])])
    assert scan(path).problems == [f"{path.resolve()}: annotation 9 (image photo_3.png): its category_id 5 is not "
                                   "among the categories [3, 7]: add the category, or fix the id"]
    data = json.loads(path.read_text())
    data["annotations"][3]["category_id"] = JAR
    data["annotations"][1]["id"] = 1  # pycocotools would draw annotation 1 of image 1 on image 2 too
    path.write_text(json.dumps(data))
    assert any("annotation #1 (counting from 0) has the id 1 of an earlier annotation" in p
               for p in verify_own_data(path).problems)
    del data["annotations"][0]["id"]
    path.write_text(json.dumps(data))
    assert any("annotation #0 (counting from 0) has no id" in p for p in verify_own_data(path).problems)


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


def test_a_compressed_rle_pycocotools_cannot_decode_is_a_data_error_not_a_crash(tmp_path):
    annotations = [dict(id=i, image_id=i, category_id=JAR, segmentation=[_rect(1, 1, 4, 3)]) for i in (1, 2, 3)]
    path = _write_hand_coco(tmp_path / "rle", [*annotations, dict(id=42, image_id=2, category_id=JAR,
                                                                  segmentation={"size": [HEIGHT, WIDTH],
                                                                                "counts": "garbage!!"})])
    assert scan(path).problems == []  # a compressed string is only checked when it is decoded
    expected = f"{path.resolve()}: annotation 42 (image photo_2.png): pycocotools cannot draw its segmentation"
    problems = verify_own_data(path).problems
    assert len(problems) == 1 and problems[0].startswith(expected), problems
    found = scan(path)
    dataset = CocoSegmentationDataset(found.samples, found.coco, task="binary", num_classes=2, image_size=32,
                                      train=False, origin="test")
    with pytest.raises(DataError, match="annotation 42"):
        dataset.load_pair(1)
