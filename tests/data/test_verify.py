"""verify_dataset on tiny datasets written in the official layouts, with problems planted.

``write_csv_layout`` and ``write_trans10k_layout`` are also used by test_install.py and the
training and notebook tests.
"""
from pathlib import Path

import numpy as np
from PIL import Image

from convlora_lite.cli import main
from convlora_lite.data.registry import get_dataset_spec
from convlora_lite.data.verify import check_layout, verify_dataset

SIZE = 8


def _png(path: Path, array: np.ndarray, mode=None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array, mode).save(path)


def _rgb(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8)


def _binary_mask() -> np.ndarray:
    mask = np.zeros((SIZE, SIZE), np.uint8)
    mask[2:6, 3:7] = 255
    return mask


def write_csv_layout(dataset_dir: Path, splits: dict, n: int = 2, suffix: str = ".png") -> None:
    """The AutoGluon zip layout: ``{split csv}`` with an index column, ``image`` and ``label``
    paths relative to ``dataset_dir``; ``n`` pairs per split, images and 0/255 masks saved as
    ``suffix`` (``".jpg"``: JPEG, as Kvasir-SEG's, so the masks get compression noise)."""
    for split, csv_name in splits.items():
        rows = []
        for i in range(n):
            image, label = f"images/{split}_{i}{suffix}", f"masks/{split}_{i}{suffix}"
            _png(dataset_dir / image, _rgb(i))
            _png(dataset_dir / label, _binary_mask())
            rows.append(f"{i},{image},{label}")
        (dataset_dir / csv_name).write_text(",image,label\n" + "\n".join(rows) + "\n")


def write_trans10k_layout(dataset_dir: Path, n: int = 2) -> None:
    """``{train,validation,test}/images/N.jpg`` with ``masks_12/N_mask.png`` (palette, class ids)."""
    for split in ("train", "validation", "test"):
        for i in range(n):
            Image.fromarray(_rgb(i)).save(_mkparent(dataset_dir / split / "images" / f"{i}.jpg"))
            mask = Image.fromarray(np.arange(SIZE * SIZE, dtype=np.uint8).reshape(SIZE, SIZE) % 12, "P")
            mask.putpalette([v for c in range(256) for v in (c, c, c)])
            mask.save(_mkparent(dataset_dir / split / "masks_12" / f"{i}_mask.png"))


def _mkparent(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def test_clean_csv_dataset_has_no_problems(tmp_path):
    spec = get_dataset_spec("polyp")
    write_csv_layout(spec.dataset_dir(tmp_path), spec.splits, n=3)
    report = verify_dataset("polyp", tmp_path, progress=False)
    assert report.ok, report.problems
    assert report.counts == {"train": 3, "val": 3, "test_kvasir": 3, "test_cvc": 3}
    assert "OK" in str(report)


def test_clean_trans10k_dataset_has_no_problems(tmp_path):
    write_trans10k_layout(get_dataset_spec("trans10k").dataset_dir(tmp_path))
    report = verify_dataset("trans10k", tmp_path, progress=False)
    assert report.ok, report.problems
    assert report.counts == {"train": 2, "val": 2, "test": 2}


def test_every_problem_is_listed(tmp_path):
    spec = get_dataset_spec("sbu")
    d = spec.dataset_dir(tmp_path)
    write_csv_layout(d, spec.splits, n=3)
    (d / "images/train_0.png").unlink()                                              # missing
    (d / "images/train_1.png").write_bytes((d / "images/train_1.png").read_bytes()[:40])  # truncated
    _png(d / "masks/val_0.png", np.zeros((SIZE + 1, SIZE), np.uint8))               # wrong size
    _png(d / "masks/val_1.png", (_binary_mask() > 0).astype(np.uint8) * 3)          # class ids, not binary
    (d / "test.csv").unlink()                                                        # split gone
    report = verify_dataset("sbu", tmp_path, progress=False)
    text = "\n".join(report.problems)
    assert len(report.problems) == 5, text
    assert "missing file" in text and "train_0.png" in text
    assert "cannot read" in text and "train_1.png" in text
    assert "size mismatch" in text and "is 8x9" in text
    assert "val_1.png does not look like a binary mask: its largest value is 3" in text
    assert text.count("test:") == 1 and "test.csv" in text
    assert report.counts == {"train": 3, "val": 3}
    assert not report.ok and "5 problem(s)" in str(report)


def test_zero_one_masks_are_binary_and_jpeg_like_masks_are_noted_not_reported(tmp_path):
    spec = get_dataset_spec("leaf")
    d = spec.dataset_dir(tmp_path)
    write_csv_layout(d, spec.splits, n=1)
    _png(d / "masks/train_0.png", (_binary_mask() // 255).astype(np.uint8))
    assert verify_dataset("leaf", tmp_path, progress=False).thresholded == 0
    jpeg_like = _binary_mask()
    jpeg_like[0, 0], jpeg_like[0, 1] = 3, 250  # compression noise around 0 and 255
    _png(d / "masks/val_0.png", jpeg_like)
    report = verify_dataset("leaf", tmp_path, progress=False)
    assert report.ok and report.thresholded == 1
    assert "Note: 1 binary mask(s) hold values other than 0/255" in str(report)


def test_multiclass_values_outside_the_classes_and_rgb_masks(tmp_path):
    d = get_dataset_spec("trans10k").dataset_dir(tmp_path)
    write_trans10k_layout(d)
    bad = np.zeros((SIZE, SIZE), np.uint8)
    bad[0, :3] = (11, 12, 255)  # 11 = box, 12 = out of range, 255 = ignore
    _png(d / "train/masks_12/0_mask.png", bad)
    _png(d / "test/masks_12/1_mask.png", np.zeros((SIZE, SIZE, 3), np.uint8))
    report = verify_dataset("trans10k", tmp_path, progress=False)
    assert len(report.problems) == 2, report.problems
    assert "values [12] outside the classes 0..11" in report.problems[0]
    assert "mode RGB" in report.problems[1]


def test_missing_dataset_says_how_to_get_it(tmp_path):
    report = verify_dataset("synth_road", tmp_path, progress=False)
    assert report.problems == [(f"{tmp_path}/synth_road/synth_road does not exist; run "
                                f"`convlora data synth synth_road --root {tmp_path}`")]


def test_check_layout_only_checks_presence(tmp_path):
    spec = get_dataset_spec("camo")
    d = spec.dataset_dir(tmp_path)
    write_csv_layout(d, spec.splits, n=2)
    (d / "masks/test_1.png").write_bytes(b"not a png")  # present: fine for the layout check
    (d / "masks/val_0.png").unlink()
    pairs, problems = check_layout(spec, tmp_path)
    assert problems == [f"val: missing file {d / 'masks/val_0.png'}"]
    assert [len(p) for p in pairs.values()] == [2, 2, 2]


def test_cli_verify_prints_the_report_and_fails_on_problems(tmp_path, capsys):
    spec = get_dataset_spec("road")
    d = spec.dataset_dir(tmp_path)
    write_csv_layout(d, spec.splits, n=1)
    assert main(["data", "verify", "road", "--root", str(tmp_path)]) == 0
    assert "OK: no problems found." in capsys.readouterr().out
    (d / "images/val_0.png").unlink()
    (d / "masks/test_0.png").unlink()
    assert main(["data", "verify", "road", "--root", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert "2 problem(s)" in out and "val_0.png" in out and "test_0.png" in out


def test_cli_synth_all_writes_analogs_that_verify_clean(tmp_path, capsys):
    args = ["--root", str(tmp_path), "--size", "32", "--n-train", "2", "--n-val", "1", "--n-test", "1"]
    assert main(["data", "synth", "all", *args, "--seed", "3"]) == 0
    written = capsys.readouterr().out.splitlines()
    assert [line.split(":")[0] for line in written] == [
        f"synth_{n}" for n in ("polyp", "isic2017", "camo", "sbu", "leaf", "road", "trans10k", "prior_texture",
                               "prior_colour")]
    for line in written:
        report = verify_dataset(line.split(":")[0], tmp_path, progress=False)
        assert report.ok, report.problems
        assert report.counts == {"train": 2, "val": 1, "test": 1}
