"""download_dataset against zips built in the official layout and served on 127.0.0.1."""
import io
import json
import socket
import sys
import types
import zipfile
from dataclasses import replace
from pathlib import Path

import pytest
from test_verify import write_csv_layout, write_trans10k_layout

from convlora_lite.cli import main
from convlora_lite.data import install as fetch
from convlora_lite.data.install import COMPLETE_MARKER, download_dataset, is_installed
from convlora_lite.data.registry import DATASETS, get_dataset_spec
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
    with pytest.raises(DataError, match="not a complete download .* `convlora data verify polyp"):
        download_dataset("polyp", tmp_path, base_url=polyp_zip.url("/bucket"))
    assert polyp_zip.requests == []


def test_synthetic_names_point_to_synth(tmp_path):
    with pytest.raises(ConfigError, match="`convlora data synth synth_leaf --root"):
        download_dataset("synth_leaf", tmp_path)


def test_offline_fails_fast_and_names_the_file_and_place(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    root = tmp_path / "data"
    with pytest.raises(DownloadError, match="could not reach") as err:
        download_dataset("isic2017", root, base_url=f"http://127.0.0.1:{port}/b")
    assert f"http://127.0.0.1:{port}/b/isic2017.zip" in str(err.value)
    assert str((root / "isic2017.zip").resolve()) in str(err.value)
    assert _entries(root) == []


def _fake_gdown(monkeypatch, archive: bytes | None = None, error: Exception | None = None) -> list:
    """Install a stand-in ``gdown`` module; returns the list of ids it was asked for."""
    calls = []
    exceptions = types.ModuleType("gdown.exceptions")
    exceptions.FileURLRetrievalError = type("FileURLRetrievalError", (Exception,), {})

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


def test_trans10k_offline_says_where_to_put_the_folders(tmp_path, monkeypatch):
    _fake_gdown(monkeypatch, error=ConnectionError("Failed to resolve 'drive.google.com'"))
    with pytest.raises(DownloadError, match="(?s)drive.google.com/file/d/.* copy the archive to "
                                            ".*trans10k.archive.* train/, validation/ and test/") as err:
        download_dataset("trans10k", tmp_path)
    assert str((tmp_path / "trans10k").resolve()) in str(err.value)
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
