"""download_dataset against zips built in the official layout and served on 127.0.0.1, and
install_dataset with archives and folders placed by hand."""
import io
import json
import os
import re
import shutil
import socket
import sys
import tarfile
import types
import zipfile
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from mirror import csv_dataset_zip, trans10k_zip
from PIL import Image
from test_verify import write_csv_layout, write_trans10k_layout

from convlora_lite.cli import main
from convlora_lite.data import install as fetch
from convlora_lite.data.install import COMPLETE_MARKER, download_dataset, ensure_dataset, install_dataset, is_installed
from convlora_lite.data.registry import DATASETS, get_dataset_spec
from convlora_lite.data.verify import verify_dataset
from convlora_lite.errors import ConfigError, DataError, DownloadError


def _zip_of(folder: Path, arc_root: str) -> bytes:
    """The files under ``folder`` zipped as ``{arc_root}/...`` (stored, so a flipped byte shows
    up as a CRC error)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as zf:
        for path in sorted(folder.rglob("*")):
            zf.write(path, f"{arc_root}/{path.relative_to(folder)}")
    return buffer.getvalue()


def official_zip(tmp_path: Path, name: str, drop: str | None = None) -> bytes:
    """The zip of dataset ``name`` as AutoGluon ships it: ``{folder}/{csvs, images, masks}``."""
    spec = get_dataset_spec(name)
    src = tmp_path / "zipsrc" / name
    write_csv_layout(src, spec.splits, n=2)
    if drop:
        (src / drop).unlink()
    return _zip_of(src, spec.folder)


@pytest.fixture
def polyp_zip(server, tmp_path):
    server.files["/bucket/polyp.zip"] = official_zip(tmp_path, "polyp")
    return server


def _entries(root: Path) -> list:
    return sorted(p.name for p in root.iterdir())


def test_download_extracts_verifies_and_marks(polyp_zip, tmp_path):
    root = tmp_path / "data"
    path = download_dataset("polyp", root, base_url=polyp_zip.url("/bucket/"))
    assert path == root / "polyp" / "polyp"
    assert {p.name for p in path.glob("*.csv")} == {"train.csv", "val.csv", "test_Kvasir.csv",
                                                    "test_CVC-ClinicDB.csv"}
    marker = json.loads((root / "polyp" / COMPLETE_MARKER).read_text())
    assert marker["counts"] == {"train": 2, "val": 2, "test_kvasir": 2, "test_cvc": 2}
    assert _entries(root) == ["polyp"]  # zip deleted, no staging folder
    assert is_installed("polyp", root)
    assert polyp_zip.requests == [("/bucket/polyp.zip", None)]
    download_dataset("polyp", root, base_url=polyp_zip.url("/bucket"))  # already there
    assert len(polyp_zip.requests) == 1


def test_base_url_from_the_environment_and_keep_zip(polyp_zip, tmp_path, monkeypatch):
    monkeypatch.setenv("CONVLORA_DATA_BASE_URL", polyp_zip.url("/bucket"))
    download_dataset("polyp", tmp_path / "data", keep_archive=True)
    assert _entries(tmp_path / "data") == ["polyp", "polyp.zip"]


def test_official_url_is_the_default():
    spec = get_dataset_spec("sbu")
    assert fetch.dataset_url(spec) == "https://automl-mm-bench.s3.amazonaws.com/semantic_segmentation/SBU-shadow.zip"
    assert fetch.dataset_url(spec, "file:///mirror/") == "file:///mirror/SBU-shadow.zip"


@pytest.mark.parametrize("damage", ["truncated", "corrupted"])
def test_damaged_zip_is_rejected_and_nothing_is_left(server, tmp_path, damage):
    data = official_zip(tmp_path, "camo")
    if damage == "truncated":
        data = data[: len(data) // 2]
    else:  # flip one byte inside the first member's data: only its CRC can tell
        offset = data.index(b"\n1,images") + 3
        data = data[:offset] + bytes([data[offset] ^ 0xFF]) + data[offset + 1:]
    server.files["/b/camo_sem_seg.zip"] = data
    root = tmp_path / "data"
    with pytest.raises(DownloadError, match="camo_sem_seg.zip .* is corrupt .* Run the same command again"):
        download_dataset("camo", root, base_url=server.url("/b"))
    assert _entries(root) == []


def test_registered_sha256_is_checked(server, tmp_path, monkeypatch):
    monkeypatch.setitem(DATASETS, "road", replace(get_dataset_spec("road"), sha256="0" * 64))
    server.files["/b/road_segmentation.zip"] = official_zip(tmp_path, "road")
    with pytest.raises(DownloadError, match="is corrupt"):
        download_dataset("road", tmp_path / "data", base_url=server.url("/b"))
    assert _entries(tmp_path / "data") == []


def test_zip_not_in_the_official_layout_is_a_data_error(server, tmp_path):
    server.files["/b/polyp.zip"] = official_zip(tmp_path, "polyp", drop="test_CVC-ClinicDB.csv")
    root = tmp_path / "data"
    with pytest.raises(DataError, match="not in the official layout") as err:
        download_dataset("polyp", root, base_url=server.url("/b"))
    assert "\n  test_cvc: polyp/test_CVC-ClinicDB.csv does not exist\n" in str(err.value)
    assert _entries(root) == []


def test_failure_during_extraction_leaves_nothing_complete_looking(polyp_zip, tmp_path, monkeypatch):
    original = zipfile.ZipFile.extractall

    def extract_a_few_then_fail(self, path=None, members=None, pwd=None):
        original(self, path, self.namelist()[:3], pwd)
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(zipfile.ZipFile, "extractall", extract_a_few_then_fail)
    root = tmp_path / "data"
    with pytest.raises(DataError, match="No space left on device.*nothing was installed"):
        download_dataset("polyp", root, base_url=polyp_zip.url("/bucket"))
    assert _entries(root) == ["polyp.zip"]  # the intact download is kept for the next try
    assert not is_installed("polyp", root)
    monkeypatch.setattr(zipfile.ZipFile, "extractall", original)
    download_dataset("polyp", root, base_url=polyp_zip.url("/bucket"))
    assert is_installed("polyp", root) and len(polyp_zip.requests) == 1


def test_staging_folder_of_a_killed_run_is_removed(polyp_zip, tmp_path):
    stale = tmp_path / "data" / ".extracting-1234" / "polyp" / "polyp"
    stale.mkdir(parents=True)
    (stale / "train.csv").write_text(",image,label\n")
    download_dataset("polyp", tmp_path / "data", base_url=polyp_zip.url("/bucket"))
    assert _entries(tmp_path / "data") == ["polyp"]


def test_existing_folder_without_marker_is_not_overwritten(polyp_zip, tmp_path):
    (tmp_path / "polyp" / "polyp").mkdir(parents=True)
    adopt = f"`convlora data install polyp {tmp_path / 'polyp'} --root {tmp_path}`"
    with pytest.raises(DataError, match=f"present but not installed .* Adopt it with {re.escape(adopt)}"):
        download_dataset("polyp", tmp_path, base_url=polyp_zip.url("/bucket"))
    assert polyp_zip.requests == []


def test_synthetic_names_point_to_synth(tmp_path):
    with pytest.raises(ConfigError, match="`convlora data synth synth_leaf --root"):
        download_dataset("synth_leaf", tmp_path)


def test_offline_fails_fast_and_names_the_file_the_url_and_the_install_command(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    root = tmp_path / "data"
    with pytest.raises(DownloadError, match="could not reach") as err:
        download_dataset("isic2017", root, base_url=f"http://127.0.0.1:{port}/b")
    message = str(err.value)
    assert f"fetch isic2017.zip from http://127.0.0.1:{port}/b/isic2017.zip on a machine with internet" in message
    assert f"`convlora data install isic2017 PATH/TO/isic2017.zip --root {root}`" in message
    assert str((root / "isic2017.zip").resolve()) in message
    assert _entries(root) == []


class FileURLRetrievalError(Exception):
    """Stands for ``gdown.exceptions.FileURLRetrievalError``."""


def _fake_gdown(monkeypatch, archive: bytes | None = None, error: Exception | None = None) -> list:
    """Install a stand-in ``gdown`` module; returns the list of ids it was asked for."""
    calls = []
    exceptions = types.ModuleType("gdown.exceptions")
    exceptions.FileURLRetrievalError = FileURLRetrievalError

    def download(id, output, quiet, resume):
        calls.append(id)
        if error is not None:
            raise error
        Path(output).write_bytes(archive)
        return output

    module = types.ModuleType("gdown")
    module.download, module.exceptions = download, exceptions
    monkeypatch.setitem(sys.modules, "gdown", module)
    monkeypatch.setitem(sys.modules, "gdown.exceptions", exceptions)
    return calls


def test_trans10k_from_google_drive_is_unwrapped_and_installed(tmp_path, monkeypatch):
    src = tmp_path / "src"
    write_trans10k_layout(src)
    calls = _fake_gdown(monkeypatch, _zip_of(src, "Trans10K_cls12"))
    root = tmp_path / "data"
    path = download_dataset("trans10k", root)
    assert path == root / "trans10k"
    assert _entries(path) == [COMPLETE_MARKER, "test", "train", "validation"]
    assert (path / "validation" / "masks_12" / "1_mask.png").is_file()
    assert calls == [get_dataset_spec("trans10k").gdrive_id]
    assert _entries(root) == ["trans10k"]


def test_trans10k_from_a_mirror_skips_google_drive(server, tmp_path, monkeypatch):
    """With a mirror (--base-url / $CONVLORA_DATA_BASE_URL) Trans10K-v2 comes from it, as the Drive zip."""
    calls = _fake_gdown(monkeypatch, b"")
    server.files[f"/m/{fetch.TRANS10K_MIRROR_NAME}"] = trans10k_zip({"train": 3})
    monkeypatch.setenv("CONVLORA_DATA_BASE_URL", server.url("/m/"))
    path = download_dataset("trans10k", tmp_path / "data")
    assert calls == [] and server.requests == [(f"/m/{fetch.TRANS10K_MIRROR_NAME}", None)]
    assert json.loads((path / COMPLETE_MARKER).read_text())["counts"] == {"train": 3, "val": 2, "test": 2}
    assert _entries(tmp_path / "data") == ["trans10k"]  # the zip is gone once installed
    assert verify_dataset("trans10k", tmp_path / "data", progress=False).ok


def test_jpeg_masks_and_photos_of_several_sizes_install_and_load(server, tmp_path):
    """The polyp zip as the real one is: JPEG images of different sizes, JPEG-compressed masks
    (values near, not at, 0 and 255), an index column; the masks load as exact {0, 1}."""
    from convlora_lite.data.datasets import build_dataset

    server.files["/m/polyp.zip"] = csv_dataset_zip("polyp", {"train": 4})
    root = tmp_path / "data"
    download_dataset("polyp", root, base_url=server.url("/m"))
    train = build_dataset("polyp", "train", root, 32, train=False)
    files = [[Image.open(path) for path in train.pairs[i]] for i in range(4)]
    assert len({image.size for image, _ in files}) > 1
    assert any(0 < v < 255 for _, mask in files for v in np.unique(np.asarray(mask)))  # JPEG noise
    mask = train[0]["mask"]
    assert mask.shape == (32, 32) and set(mask.unique().tolist()) == {0.0, 1.0}


DRIVE_PAGE = "https://drive.google.com/file/d/1YzAAMY8xfL9BMTIDU-nFC3dcGbSIBPu5"
#: what gdown raises when Drive's quota is reached (its text wrapped over lines, as gdown does).
QUOTA = ("Failed to retrieve file url:\n\n\tToo many users have viewed or downloaded this file\n\trecently. "
         "Please try accessing the file again later.\n\nYou may still be able to access the file from the "
         "browser:\n\n\thttps://drive.google.com/uc?id=1YzAAMY8xfL9BMTIDU-nFC3dcGbSIBPu5\n\nbut Gdown can't.")


@pytest.mark.parametrize("error", [ConnectionError("Failed to resolve 'drive.google.com'"),
                                   FileURLRetrievalError(QUOTA)], ids=["offline", "quota"])
def test_trans10k_drive_errors_say_what_to_fetch_where_and_the_install_command(tmp_path, monkeypatch, error):
    _fake_gdown(monkeypatch, error=error)
    with pytest.raises(DownloadError) as err:
        download_dataset("trans10k", tmp_path)
    message = str(err.value)
    assert f"Fetch the Trans10K-v2 archive by hand: open {DRIVE_PAGE} (Google Drive file id " in message
    assert "pan.baidu.com" in message
    assert f"`convlora data install trans10k PATH/TO/ARCHIVE --root {tmp_path}`" in message
    assert str((tmp_path / "trans10k.archive").resolve()) in message
    quota = '"too many users have viewed or downloaded this file recently"'
    assert (quota in message) == isinstance(error, FileURLRetrievalError)
    assert _entries(tmp_path) == []


def test_cli_download_and_list(polyp_zip, tmp_path, capsys):
    assert main(["data", "download", "polyp", "--root", str(tmp_path), "--base-url",
                 polyp_zip.url("/bucket")]) == 0
    assert f"ready at {tmp_path / 'polyp' / 'polyp'}" in capsys.readouterr().out
    assert main(["data", "download", "synth_polyp", "--root", str(tmp_path)]) == 2
    assert "convlora data synth synth_polyp" in capsys.readouterr().err
    assert main(["data", "list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["name", "task", "metrics", "loss", "select", "epochs", "lr", "source"]
    sbu = next(line for line in lines if line.startswith("sbu "))
    assert sbu.split() == ["sbu", "binary", "ber", "balanced_bce", "ber", "(min)", "10", "0.0001", "zip"]
    assert len(lines) == 1 + len(DATASETS)


def test_trans10k_archive_placed_by_hand_is_used_even_as_tar(tmp_path, monkeypatch):
    import tarfile

    src = tmp_path / "src"
    write_trans10k_layout(src)
    root = tmp_path / "data"
    root.mkdir()
    with tarfile.open(root / "trans10k.archive", "w:gz") as tf:
        tf.add(src, arcname="Trans10K_v2")
    calls = _fake_gdown(monkeypatch, error=ConnectionError("offline"))
    download_dataset("trans10k", root)
    assert calls == [] and _entries(root) == ["trans10k"]
    assert _entries(root / "trans10k") == [COMPLETE_MARKER, "test", "train", "validation"]


# ------------------------------------------------------------------ install_dataset: archives


def _drive_archive(tmp_path: Path, kind: str) -> Path:
    """Trans10K-v2 as the Google Drive archive holds it, ``Trans10K_cls12/{train,validation,test}/
    {images/N.jpg, masks_12/N_mask.png}`` (palette masks), as a zip or a tar."""
    src = tmp_path / "drive_src"
    write_trans10k_layout(src)
    archive = tmp_path / "Downloads" / f"Trans10K_cls12.{kind}"
    archive.parent.mkdir(exist_ok=True)
    if kind == "zip":
        archive.write_bytes(_zip_of(src, "Trans10K_cls12"))
    else:
        with tarfile.open(archive, "w:gz" if kind == "tar.gz" else "w") as tf:
            tf.add(src, arcname="Trans10K_cls12")
    return archive


def test_polyp_zip_downloaded_by_hand_is_checked_and_installed_like_a_download(tmp_path):
    """The official zip with its quirks: ``polyp/`` inside (so ``{root}/polyp/polyp/``), CSVs with
    a leading unnamed index column, JPEG images and masks."""
    spec = get_dataset_spec("polyp")
    write_csv_layout(tmp_path / "zipsrc", spec.splits, n=2, suffix=".jpg")
    archive = tmp_path / "Downloads" / "polyp.zip"
    archive.parent.mkdir()
    archive.write_bytes(_zip_of(tmp_path / "zipsrc", "polyp"))
    root = tmp_path / "data"
    path = install_dataset("polyp", archive, root)
    assert path == root / "polyp" / "polyp"
    assert (path / "train.csv").read_text().startswith(",image,label\n0,images/train_0.jpg,masks/train_0.jpg\n")
    marker = json.loads((root / "polyp" / COMPLETE_MARKER).read_text())
    assert marker == {"dataset": "polyp", "source": str(archive.resolve()),
                      "counts": {"train": 2, "val": 2, "test_kvasir": 2, "test_cvc": 2}}
    assert is_installed("polyp", root) and _entries(root) == ["polyp"]  # no staging folder left
    assert archive.read_bytes() == _zip_of(tmp_path / "zipsrc", "polyp")  # the user's file is kept
    report = verify_dataset("polyp", root, progress=False)
    assert report.ok and report.thresholded == 8  # every JPEG mask, thresholded cleanly


@pytest.mark.parametrize("kind", ["zip", "tar.gz", "tar"])
def test_trans10k_drive_archive_downloaded_by_hand_is_installed(tmp_path, kind):
    archive = _drive_archive(tmp_path, kind)
    root = tmp_path / "data"
    path = install_dataset("trans10k", archive, root)
    assert path == root / "trans10k" and _entries(root) == ["trans10k"]
    assert _entries(path) == [COMPLETE_MARKER, "test", "train", "validation"]
    assert _entries(path / "validation") == ["images", "masks_12"]
    with Image.open(path / "test" / "masks_12" / "1_mask.png") as mask:
        assert mask.mode == "P" and int(np.asarray(mask).max()) == 11
    assert json.loads((path / COMPLETE_MARKER).read_text())["counts"] == {"train": 2, "val": 2, "test": 2}
    assert archive.is_file()


def test_damaged_or_wrong_archive_is_refused_and_left_as_it_is(tmp_path, monkeypatch):
    root, archive = tmp_path / "data", tmp_path / "camo_sem_seg.zip"
    data = official_zip(tmp_path, "camo")
    offset = data.index(b"\n1,images") + 3
    archive.write_bytes(data[:offset] + bytes([data[offset] ^ 0xFF]) + data[offset + 1:])
    command = f"`convlora data install camo {archive} --root {root}`"
    with pytest.raises(DataError, match=r"camo_sem_seg.zip is corrupt \(first bad member: camo_sem_seg/.*\)\. "
                                        r"Nothing was installed and the file was left as it is\. Download the "
                                        r"official archive again from https://automl-mm-bench") as err:
        install_dataset("camo", archive, root)
    assert str(err.value).endswith(command + ".")
    assert archive.is_file() and _entries(root) == []

    archive.write_bytes(official_zip(tmp_path, "camo", drop="test_CAMO.csv"))
    with pytest.raises(DataError, match="not in the official layout of CAMO") as err:
        install_dataset("camo", archive, root)
    assert "\n  test: camo_sem_seg/test_CAMO.csv does not exist\n" in str(err.value)
    assert archive.is_file() and _entries(root) == []

    monkeypatch.setitem(DATASETS, "camo", replace(get_dataset_spec("camo"), sha256="0" * 64))
    archive.write_bytes(data)
    with pytest.raises(DataError, match=f"is corrupt \\(its sha256 is [0-9a-f]{{64}}, the registry expects {'0' * 64}"):
        install_dataset("camo", archive, root)
    assert archive.is_file() and _entries(root) == []


# ------------------------------------------------------------------ install_dataset: folders


@pytest.mark.parametrize("name", ["polyp", "trans10k"])
def test_folder_placed_by_hand_is_adopted_where_it_is_after_verify(tmp_path, name):
    spec, root = get_dataset_spec(name), tmp_path / "data"
    if name == "polyp":
        write_csv_layout(spec.dataset_dir(root), spec.splits, n=2, suffix=".jpg")
    else:
        write_trans10k_layout(spec.dataset_dir(root))
    target = root / spec.folder
    adopt = f"`convlora data install {name} {target} --root {root}`"
    for use in (lambda: ensure_dataset(spec, root), lambda: download_dataset(name, root)):
        with pytest.raises(DataError,
                           match=f"{re.escape(str(target))} is present but not installed .*{re.escape(adopt)}"):
            use()
    assert install_dataset(name, target, root, progress=False) == spec.dataset_dir(root)
    marker = json.loads((target / COMPLETE_MARKER).read_text())
    assert marker["source"] == str(spec.dataset_dir(root).resolve()) and sum(marker["counts"].values()) > 0
    assert is_installed(name, root) and _entries(root) == [spec.folder]
    ensure_dataset(spec, root)
    assert download_dataset(name, root) == spec.dataset_dir(root)
    said = []
    install_dataset(name, spec.dataset_dir(root), root, log=said.append)  # the inner folder is the same dataset
    assert said == [f"{name} is already installed at {target}; nothing was done."]


def test_broken_folder_is_not_adopted_and_its_problems_are_listed(tmp_path):
    spec, root = get_dataset_spec("trans10k"), tmp_path / "data"
    folder = spec.dataset_dir(root)
    write_trans10k_layout(folder)
    (folder / "train/masks_12/0_mask.png").unlink()
    (folder / "validation/images/1.jpg").write_bytes((folder / "validation/images/1.jpg").read_bytes()[:50])
    Image.new("RGB", (8, 8)).save(folder / "test/masks_12/0_mask.png")
    with pytest.raises(DataError) as err:
        install_dataset("trans10k", folder, root, progress=False)
    message = str(err.value)
    assert message.startswith(f"{folder} was not installed as trans10k: verifying it found 3 problem(s):\n  - ")
    assert f"train: missing file {folder / 'train/masks_12/0_mask.png'}" in message
    assert f"val: cannot read {folder / 'validation/images/1.jpg'}" in message
    assert f"test: mask {folder / 'test/masks_12/0_mask.png'} has mode RGB" in message
    assert message.endswith(f"then run `convlora data install trans10k {folder} --root {root}` again.")
    assert not is_installed("trans10k", root) and COMPLETE_MARKER not in _entries(folder)
    with pytest.raises(DataError, match="present but not installed"):
        ensure_dataset(spec, root)


@pytest.mark.parametrize("move", [False, True], ids=["copied", "moved"])
def test_folder_elsewhere_is_verified_and_put_into_place(tmp_path, move):
    spec, root = get_dataset_spec("polyp"), tmp_path / "data"
    unpacked = tmp_path / "Downloads" / "polyp_unzipped"
    write_csv_layout(unpacked / "polyp", spec.splits, n=2)  # what unpacking the zip by hand gives
    path = install_dataset("polyp", unpacked, root, move=move, progress=False)
    assert path == root / "polyp" / "polyp" and is_installed("polyp", root) and _entries(root) == ["polyp"]
    assert _entries(path) == ["images", "masks", "test_CVC-ClinicDB.csv", "test_Kvasir.csv", "train.csv", "val.csv"]
    assert (unpacked / "polyp").exists() is not move
    source = json.loads((root / "polyp" / COMPLETE_MARKER).read_text())["source"]
    assert source == str((unpacked / "polyp").resolve())


def test_broken_folder_elsewhere_is_refused_naming_its_own_files(tmp_path):
    spec, root = get_dataset_spec("sbu"), tmp_path / "data"
    mine = tmp_path / "mine"
    write_csv_layout(mine, spec.splits, n=2)
    (mine / "masks/val_1.png").unlink()
    with pytest.raises(DataError) as err:
        install_dataset("sbu", mine, root, progress=False)
    assert f"  - val: missing file {mine / 'masks/val_1.png'}\nNothing was copied into place. " in str(err.value)
    assert _entries(root) == [] and (mine / "train.csv").is_file()

    with pytest.raises(DataError) as err:
        install_dataset("sbu", mine, root, move=True, progress=False)
    moved = spec.dataset_dir(root)
    assert f"val: missing file {moved / 'masks/val_1.png'}" in str(err.value)
    assert f"It was moved there from {mine} but not adopted." in str(err.value)
    assert not mine.exists() and (moved / "train.csv").is_file() and not is_installed("sbu", root)


def test_folder_that_is_not_the_dataset_says_what_it_needs(tmp_path):
    (tmp_path / "photos" / "holiday").mkdir(parents=True)
    with pytest.raises(DataError, match="photos does not hold Trans10K-v2 .* no train in it or in a folder "
                                        "directly inside it. Give the folder that holds the split folders "
                                        "train, validation, test"):
        install_dataset("trans10k", tmp_path / "photos", tmp_path / "data")
    with pytest.raises(DataError, match="nope.zip does not exist. Give the downloaded archive of sbu, .* comes from https://automl"):
        install_dataset("sbu", tmp_path / "nope.zip", tmp_path / "data")
    with pytest.raises(ConfigError, match="nothing to install; generate it with `convlora data synth synth_sbu"):
        install_dataset("synth_sbu", tmp_path / "photos", tmp_path / "data")


# ------------------------------------------------------------------ interrupted installs


def _interrupt_os_replace(monkeypatch, name: str) -> None:
    """Make renaming something to ``name`` raise KeyboardInterrupt, as a Ctrl-C at that moment."""
    original = os.replace

    def replace_or_stop(src, dst):
        if Path(dst).name == name:
            raise KeyboardInterrupt
        original(src, dst)

    monkeypatch.setattr(os, "replace", replace_or_stop)


@pytest.mark.parametrize("step", ["extracting the archive", "renaming into place", "copying the folder",
                                  "writing the marker in place"])
def test_an_interrupted_install_leaves_nothing_that_looks_complete(tmp_path, monkeypatch, step):
    spec, root = get_dataset_spec("polyp"), tmp_path / "data"
    archive = tmp_path / "polyp.zip"
    archive.write_bytes(official_zip(tmp_path, "polyp"))
    source = archive
    if step == "extracting the archive":
        original = zipfile.ZipFile.extractall

        def extract_a_few_then_stop(self, path=None, members=None, pwd=None):
            original(self, path, self.namelist()[:3], pwd)
            raise KeyboardInterrupt

        monkeypatch.setattr(zipfile.ZipFile, "extractall", extract_a_few_then_stop)
    elif step == "renaming into place":
        _interrupt_os_replace(monkeypatch, "polyp")
    elif step == "copying the folder":
        source = tmp_path / "unpacked"
        write_csv_layout(source, spec.splits, n=2)
        copytree, copied = shutil.copytree, []

        def copy(src, dst):
            if len(copied) == 3:
                raise KeyboardInterrupt
            copied.append(shutil.copy2(src, dst))

        def copy_a_few_then_stop(src, dst, *args, **kwargs):  # copytree calls itself for each subfolder
            return copytree(src, dst, copy_function=copy)

        monkeypatch.setattr(shutil, "copytree", copy_a_few_then_stop)
    else:
        source = root / "polyp"
        write_csv_layout(spec.dataset_dir(root), spec.splits, n=2)
        _interrupt_os_replace(monkeypatch, COMPLETE_MARKER)
    with pytest.raises(KeyboardInterrupt):
        install_dataset("polyp", source, root, progress=False)
    assert not is_installed("polyp", root)
    assert not list(root.rglob(COMPLETE_MARKER))  # not even in a staging folder
    if step == "writing the marker in place":
        assert _entries(root) == ["polyp"]  # the user's folder, still not installed
        with pytest.raises(DataError, match="present but not installed"):
            ensure_dataset(spec, root)
    else:
        assert _entries(root) == []
    monkeypatch.undo()
    install_dataset("polyp", source, root, progress=False)
    assert is_installed("polyp", root) and _entries(root) == ["polyp"]


# ------------------------------------------------------------------ one definition of "installed"


def test_a_folder_adopted_after_verify_is_used_by_training_and_the_notebooks(tmp_path):
    """The user's path: data unpacked by hand, verified, adopted; then ``fit`` (what
    ``convlora train`` and the sweeps call) and a notebook's data cell use it."""
    from convlora_lite.training import TrainConfig, fit
    from convlora_lite.training.run_data import ensure_synthetic

    spec, root = get_dataset_spec("polyp"), tmp_path / "data"
    write_csv_layout(spec.dataset_dir(root), spec.splits, n=2, suffix=".jpg")
    assert verify_dataset("polyp", root, progress=False).ok
    config = TrainConfig.resolve("polyp", "decoder_only", "smoke", model="test_tiny", checkpoint=None,
                                 data_root=str(root), output_dir=str(tmp_path / "run"), image_size=32,
                                 epochs=1, max_train_batches=1, max_eval_batches=1)
    adopt = re.escape(f"`convlora data install polyp {root / 'polyp'} --root {root}`")
    with pytest.raises(DataError, match=adopt):
        fit(config)
    install_dataset("polyp", root / "polyp", root, progress=False)
    run = fit(config)
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["completed"] and set(metrics["test"]) == {"test_kvasir", "test_cvc"}
    cell_root = ensure_synthetic(["polyp"], "paper", root)  # the notebooks' data cell, at paper scale
    assert download_dataset("polyp", cell_root) == spec.dataset_dir(root)


def test_missing_real_dataset_names_the_download_and_the_install_commands(tmp_path):
    with pytest.raises(DataError) as err:
        ensure_dataset(get_dataset_spec("trans10k"), tmp_path)
    message = str(err.value)
    assert f"`convlora data download trans10k --root {tmp_path}`" in message
    assert f"fetch its archive by hand from {DRIVE_PAGE} " in message
    assert f"`convlora data install trans10k ARCHIVE --root {tmp_path}`" in message


# ------------------------------------------------------------------ the command line


def test_cli_install_exit_codes_and_messages(tmp_path, capsys):
    root, archive = tmp_path / "data", tmp_path / "polyp.zip"
    archive.write_bytes(official_zip(tmp_path, "polyp"))
    assert main(["data", "install", "polyp", str(archive), "--root", str(root)]) == 0
    assert capsys.readouterr().out == f"polyp: ready at {root / 'polyp' / 'polyp'}\n"
    assert main(["data", "install", "polyp", str(archive), "--root", str(root)]) == 0
    assert capsys.readouterr().out == (f"polyp is already installed at {root / 'polyp'}; nothing was done. "
                                       f"Delete that folder first to install {archive} instead.\n"
                                       f"polyp: ready at {root / 'polyp' / 'polyp'}\n")

    spec = get_dataset_spec("leaf")
    write_csv_layout(spec.dataset_dir(root), spec.splits, n=1)
    (spec.dataset_dir(root) / "images/test_0.png").unlink()
    leaf = str(root / spec.folder)
    assert main(["data", "install", "leaf", leaf, "--root", str(root)]) == 2
    err = capsys.readouterr().err
    assert (f"convlora data: error: {spec.dataset_dir(root)} was not installed as leaf: "
            f"verifying it found 1 problem(s):\n  - test: missing file "
            f"{spec.dataset_dir(root) / 'images/test_0.png'}\n") in err
    write_csv_layout(spec.dataset_dir(root), spec.splits, n=1)
    assert main(["data", "verify", "leaf", "--root", str(root)]) == 0
    assert capsys.readouterr().out.endswith(f"OK: no problems found.\nNot installed yet (no completion marker): "
                                            f"training and the notebooks use it once adopted with "
                                            f"`convlora data install leaf {leaf} --root {root}`.\n")
    assert main(["data", "install", "leaf", leaf, "--root", str(root)]) == 0
    assert is_installed("leaf", root)
    assert main(["data", "verify", "leaf", "--root", str(root)]) == 0
    assert "Not installed" not in capsys.readouterr().out

    assert main(["data", "install", "sbu", str(tmp_path / "nope.zip"), "--root", str(root)]) == 2
    assert "nope.zip does not exist" in capsys.readouterr().err
    assert main(["data", "install", "synth_polyp", str(archive), "--root", str(root)]) == 2
    assert "convlora data synth synth_polyp" in capsys.readouterr().err
