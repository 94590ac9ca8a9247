"""Datasets for every layout (official CSV, Trans10K folders, a user's folder) and their errors."""
from dataclasses import replace

import numpy as np
import pytest
import torch
from PIL import Image

from convlora_lite.data.datasets import (
    CsvSegmentationDataset,
    FolderSegmentationDataset,
    Trans10KDataset,
    build_dataset,
)
from convlora_lite.data.registry import get_dataset_spec
from convlora_lite.errors import ConfigError, DataError, UserError

SIZE = 8


def _pixels(seed, height=12, width=10):
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def _binary_mask(seed, height=12, width=10):
    return (np.random.default_rng(seed).random((height, width)) > 0.5).astype(np.uint8) * 255


def _write_csv_dataset(folder, n=3, index_column=True, csv_name="train.csv"):
    """n image/mask PNG pairs under ``folder`` and a CSV listing them (paths relative)."""
    (folder / "images").mkdir(parents=True, exist_ok=True)
    (folder / "masks").mkdir(exist_ok=True)
    lines = [",image,label" if index_column else "image,label"]
    for i in range(n):
        Image.fromarray(_pixels(i)).save(folder / "images" / f"img{i}.png")
        Image.fromarray(_binary_mask(i)).save(folder / "masks" / f"img{i}.png")
        row = f"images/img{i}.png,masks/img{i}.png"
        lines.append(f"{i},{row}" if index_column else row)
    (folder / csv_name).write_text("\n".join(lines) + "\n")
    return folder / csv_name


def _expected_binary_mask(seed):
    mask = Image.fromarray(_binary_mask(seed) // 255).resize((SIZE, SIZE), Image.NEAREST)
    return torch.from_numpy(np.asarray(mask).astype(np.float32))


# --------------------------------------------------------------------------- CSV layout
@pytest.mark.parametrize("index_column", [True, False])
def test_csv_dataset_reads_pairs_with_or_without_index_column(tmp_path, index_column):
    csv = _write_csv_dataset(tmp_path, index_column=index_column)
    dataset = CsvSegmentationDataset(csv, image_size=SIZE)
    assert len(dataset) == 3
    item = dataset[1]
    assert set(item) == {"image", "mask", "name"} and item["name"] == "img1"
    assert item["image"].shape == (3, SIZE, SIZE) and item["image"].dtype == torch.float32
    assert item["mask"].dtype == torch.float32
    torch.testing.assert_close(item["mask"], _expected_binary_mask(1))


def test_build_dataset_finds_the_official_csv_layout(tmp_path):
    spec = get_dataset_spec("camo")  # zip folder camo_sem_seg, test split test_CAMO.csv
    folder = spec.dataset_dir(tmp_path)
    _write_csv_dataset(folder, n=2, csv_name="test_CAMO.csv")
    dataset = build_dataset("camo", "test", tmp_path, image_size=SIZE, train=False)
    assert isinstance(dataset, CsvSegmentationDataset) and len(dataset) == 2
    assert dataset[0]["mask"].shape == (SIZE, SIZE)


def test_grayscale_and_rgba_images_load_as_three_channels(tmp_path):
    csv = _write_csv_dataset(tmp_path, n=2)
    gray = _pixels(0)[..., 0]
    Image.fromarray(gray, mode="L").save(tmp_path / "images" / "img0.png")
    rgba = np.dstack([_pixels(1), np.zeros((12, 10), np.uint8)])
    Image.fromarray(rgba, mode="RGBA").save(tmp_path / "images" / "img1.png")
    dataset = CsvSegmentationDataset(csv, image_size=SIZE)
    gray_image, _ = dataset.load_pair(0)
    np.testing.assert_array_equal(np.asarray(gray_image), np.repeat(gray[..., None], 3, axis=2))
    rgba_image, _ = dataset.load_pair(1)
    np.testing.assert_array_equal(np.asarray(rgba_image), _pixels(1))  # alpha dropped
    assert dataset[0]["image"].shape == dataset[1]["image"].shape == (3, SIZE, SIZE)


# --------------------------------------------------------------------------- Trans10K layout
def _write_trans10k_split(split_dir, labels_list, palette=True):
    (split_dir / "images").mkdir(parents=True)
    (split_dir / "masks_12").mkdir()
    for i, labels in enumerate(labels_list):
        Image.fromarray(_pixels(i, *labels.shape)).save(split_dir / "images" / f"{i}.jpg")
        mask = Image.fromarray(labels, mode="P" if palette else "L")
        if palette:
            mask.putpalette([v for k in range(256) for v in (k * 7 % 256, 200, 50)])
        mask.save(split_dir / "masks_12" / f"{i}_mask.png")


@pytest.mark.parametrize("palette", [True, False])
def test_trans10k_dataset_reads_index_masks(tmp_path, palette):
    labels = np.random.default_rng(0).integers(0, 12, (12, 10)).astype(np.uint8)
    labels[0, 0] = 255
    _write_trans10k_split(tmp_path / "trans10k" / "validation", [labels, labels[::-1].copy()], palette)
    dataset = build_dataset("trans10k", "val", tmp_path, image_size=SIZE, train=False)
    assert isinstance(dataset, Trans10KDataset) and len(dataset) == 2
    item = dataset[0]
    assert item["mask"].dtype == torch.int64 and item["name"] == "0"
    expected = np.asarray(Image.fromarray(labels).resize((SIZE, SIZE), Image.NEAREST))
    np.testing.assert_array_equal(item["mask"].numpy(), expected)


def test_trans10k_mask_outside_the_classes_is_a_data_error(tmp_path):
    labels = np.full((12, 10), 13, np.uint8)
    _write_trans10k_split(tmp_path / "test", [labels])
    dataset = Trans10KDataset(tmp_path / "test", image_size=SIZE)
    with pytest.raises(DataError, match=r"0_mask\.png holds values \[13\]"):
        dataset[0]


# --------------------------------------------------------------------------- user folder
def test_folder_dataset_matches_by_stem_including_mask_suffix(tmp_path):
    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    Image.fromarray(_pixels(0)).save(tmp_path / "images" / "b.jpg")
    Image.fromarray(_pixels(1)).save(tmp_path / "images" / "a.png")
    Image.fromarray(_binary_mask(0)).save(tmp_path / "masks" / "b.png")
    Image.fromarray(_binary_mask(1)).save(tmp_path / "masks" / "a_mask.png")
    dataset = FolderSegmentationDataset(tmp_path, image_size=SIZE)
    assert [(image.name, mask.name) for image, mask in dataset.pairs] == [("a.png", "a_mask.png"),
                                                                          ("b.jpg", "b.png")]
    torch.testing.assert_close(dataset[0]["mask"], _expected_binary_mask(1))


def test_folder_dataset_multiclass_with_ignore(tmp_path):
    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    labels = np.array([[0, 1, 2, 255]] * 4, np.uint8)
    Image.fromarray(_pixels(0, 4, 4)).save(tmp_path / "images" / "x.png")
    Image.fromarray(labels).save(tmp_path / "masks" / "x.png")
    item = FolderSegmentationDataset(tmp_path, task="multiclass", num_classes=3, image_size=4)[0]
    np.testing.assert_array_equal(item["mask"].numpy(), labels)


def test_folder_dataset_reports_images_without_masks(tmp_path):
    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    Image.fromarray(_pixels(0)).save(tmp_path / "images" / "lonely.png")
    with pytest.raises(DataError, match=r"have no mask.*lonely\.png"):
        FolderSegmentationDataset(tmp_path)


def test_build_dataset_supports_a_user_folder_spec(tmp_path):
    spec = replace(get_dataset_spec("synth_leaf"), name="mine", layout="folder",
                   splits={"train": "tr", "val": "va", "test": "te"})
    folder = spec.split_path(tmp_path, "train")
    (folder / "images").mkdir(parents=True)
    (folder / "masks").mkdir()
    Image.fromarray(_pixels(0)).save(folder / "images" / "p.png")
    Image.fromarray(_binary_mask(0)).save(folder / "masks" / "p.png")
    dataset = build_dataset(spec, "train", tmp_path, image_size=SIZE, train=True)
    assert isinstance(dataset, FolderSegmentationDataset)
    assert dataset[0]["mask"].sum() == _expected_binary_mask(0).sum()  # a flip keeps the count


# --------------------------------------------------------------------------- errors
def test_missing_file_is_reported_up_front_and_when_read(tmp_path):
    csv = _write_csv_dataset(tmp_path)
    (tmp_path / "masks" / "img2.png").unlink()
    dataset = CsvSegmentationDataset(csv, image_size=SIZE)
    with pytest.raises(DataError, match=r"(?s)1 file\(s\) listed in .*train\.csv do not exist.*img2\.png"):
        dataset.check_files()
    with pytest.raises(DataError, match=r"mask .*img2\.png does not exist \(listed in .*train\.csv\)"):
        dataset[2]
    assert dataset[0]["mask"].shape == (SIZE, SIZE)  # the other items still load


def test_unreadable_image(tmp_path):
    csv = _write_csv_dataset(tmp_path)
    (tmp_path / "images" / "img0.png").write_bytes(b"not a png at all")
    with pytest.raises(DataError, match=r"cannot read image .*img0\.png.*re-download"):
        CsvSegmentationDataset(csv, image_size=SIZE)[0]


def test_truncated_image(tmp_path):
    csv = _write_csv_dataset(tmp_path)
    path = tmp_path / "images" / "img1.png"
    path.write_bytes(path.read_bytes()[:60])
    with pytest.raises(DataError, match=r"cannot read image .*img1\.png"):
        CsvSegmentationDataset(csv, image_size=SIZE)[1]


def test_image_mask_size_mismatch(tmp_path):
    csv = _write_csv_dataset(tmp_path)
    Image.fromarray(_binary_mask(0, 5, 5)).save(tmp_path / "masks" / "img0.png")
    with pytest.raises(DataError, match=r"img0\.png is 10x12 but its mask .*img0\.png is 5x5"):
        CsvSegmentationDataset(csv, image_size=SIZE)[0]


def test_binary_mask_with_class_indices(tmp_path):
    csv = _write_csv_dataset(tmp_path)
    Image.fromarray(np.full((12, 10), 3, np.uint8)).save(tmp_path / "masks" / "img0.png")
    with pytest.raises(DataError, match=r"img0\.png does not look like a binary mask"):
        CsvSegmentationDataset(csv, image_size=SIZE)[0]


@pytest.mark.parametrize("content, message", [
    ("", "is empty"),
    ("image,label\n", "has a header but no rows"),
    ("picture,mask\na.png,b.png\n", r"needs columns 'image' and 'label'.*\['picture', 'mask'\]"),
    ("image,label\na.png,\n", "row 0 has an empty"),
])
def test_bad_csv(tmp_path, content, message):
    (tmp_path / "train.csv").write_text(content)
    with pytest.raises(DataError, match=message):
        CsvSegmentationDataset(tmp_path / "train.csv")


def test_missing_csv(tmp_path):
    with pytest.raises(DataError, match=r"val\.csv does not exist"):
        CsvSegmentationDataset(tmp_path / "val.csv")


def test_missing_dataset_says_how_to_get_it(tmp_path):
    with pytest.raises(DataError, match=r"convlora data download polyp --root"):
        build_dataset("polyp", "train", tmp_path, image_size=SIZE, train=True)
    with pytest.raises(DataError, match=r"convlora data synth synth_road --root"):
        build_dataset("synth_road", "val", tmp_path, image_size=SIZE, train=False)


def test_unknown_split_lists_the_known_ones(tmp_path):
    with pytest.raises(ConfigError, match="test_kvasir, test_cvc") as caught:
        build_dataset("polyp", "test", tmp_path, image_size=SIZE, train=False)
    assert isinstance(caught.value, UserError)


def test_missing_trans10k_folders(tmp_path):
    (tmp_path / "train" / "images").mkdir(parents=True)
    with pytest.raises(DataError, match=r"mask folder .*masks_12 does not exist"):
        Trans10KDataset(tmp_path / "train")
    (tmp_path / "train" / "masks_12").mkdir()
    with pytest.raises(DataError, match="lists no samples"):
        Trans10KDataset(tmp_path / "train")


def test_dataloader_batches_items(tmp_path):
    dataset = CsvSegmentationDataset(_write_csv_dataset(tmp_path), image_size=SIZE, train=True)
    batch = next(iter(torch.utils.data.DataLoader(dataset, batch_size=3)))
    assert batch["image"].shape == (3, 3, SIZE, SIZE) and batch["mask"].shape == (3, SIZE, SIZE)
    assert batch["name"] == ["img0", "img1", "img2"]


# --------------------------------------------------------------------------- kept in memory
def _epochs_of_items(dataset, epochs=3):
    torch.manual_seed(0)  # the training flip draws from the global stream
    return [[dataset[i] for i in range(len(dataset))] for _ in range(epochs)]


def test_keep_in_memory_returns_the_same_items_and_flips_and_skips_decoding(tmp_path, monkeypatch):
    csv = _write_csv_dataset(tmp_path, n=4)
    plain = _epochs_of_items(CsvSegmentationDataset(csv, image_size=SIZE, train=True))
    kept = CsvSegmentationDataset(csv, image_size=SIZE, train=True).keep_in_memory(2**20)
    decoded = []
    load_pair = kept.load_pair
    monkeypatch.setattr(kept, "load_pair", lambda index: decoded.append(index) or load_pair(index))
    cached = _epochs_of_items(kept)
    assert decoded == [0, 1, 2, 3]  # decoded in the first epoch only
    flips = 0
    for plain_epoch, cached_epoch in zip(plain, cached):
        for a, b in zip(plain_epoch, cached_epoch):
            torch.testing.assert_close(a["image"], b["image"], rtol=0, atol=0)
            torch.testing.assert_close(a["mask"], b["mask"], rtol=0, atol=0)
    for a, b in zip(plain[0], plain[1]):
        flips += not torch.equal(a["image"], b["image"])
    assert flips > 0  # the epochs differ by their random flips, cached or not
    first = kept[0]["image"]
    first.zero_()  # a caller changing an item in place does not change the kept copy
    assert not torch.equal(kept[0]["image"], first)


def test_build_dataset_keeps_samples_up_to_its_byte_budget(tmp_path):
    _write_csv_dataset(get_dataset_spec("camo").dataset_dir(tmp_path), n=4, csv_name="test_CAMO.csv")
    item_bytes = 3 * SIZE * SIZE * 4 + SIZE * SIZE * 4  # float32 image and mask
    dataset = build_dataset("camo", "test", tmp_path, image_size=SIZE, train=False, cache_bytes=2 * item_bytes + 1)
    for i in range(4):
        dataset[i]
    assert dataset.kept_bytes == 2 * item_bytes  # the first two; the third did not fit
    default = build_dataset("camo", "test", tmp_path, image_size=SIZE, train=False)
    default[0]
    assert default.kept_bytes == 0  # off by default
