"""Download a registered dataset and install it atomically under ``root``.

Steps for the six AutoGluon zips: download ``{name}.zip`` to ``{root}/`` (resumable, see
:func:`~convlora_lite.http.download_file`), check it (sha256 when the registry has one,
else the zip's own CRCs via ``zipfile.ZipFile.testzip``), extract it into a hidden temporary
folder ``{root}/.extracting-*``, check the official layout there (every split CSV, every file it
lists), write the completion marker, and only then rename the result to ``{root}/{folder}``.
So ``{root}/{folder}`` exists only when complete; an interrupted run leaves at most the zip (or
its ``.part``, resumed next time) and a hidden temporary folder that the next run deletes.

Trans10K-v2 comes from Google Drive through ``gdown`` (imported only then), and is installed
the same way from its archive.
"""
from __future__ import annotations

import json
import os
import shutil
import tarfile
import tempfile
import zipfile
from pathlib import Path

from convlora_lite.data.registry import DatasetSpec, get_dataset_spec
from convlora_lite.data.verify import check_layout
from convlora_lite.errors import ConfigError, DataError, DownloadError
from convlora_lite.http import download_file

#: environment variable that replaces the official S3 prefix (a mirror, or a local folder).
BASE_URL_ENV = "CONVLORA_DATA_BASE_URL"
#: file written last into an installed dataset folder; its presence means "complete".
COMPLETE_MARKER = ".convlora_complete.json"
_TMP_PREFIX = ".extracting-"


def install_dir(spec: DatasetSpec, root) -> Path:
    """The folder one dataset occupies under ``root`` (``{root}/{folder}``)."""
    return Path(root) / spec.folder


def is_installed(name: str, root="data") -> bool:
    """True when ``name`` was completely downloaded and extracted under ``root``."""
    return (install_dir(get_dataset_spec(name), root) / COMPLETE_MARKER).is_file()


def dataset_url(spec: DatasetSpec, base_url: str | None = None) -> str:
    """Where to download ``spec``'s zip: ``base_url`` (else ``$CONVLORA_DATA_BASE_URL``) +
    ``/`` + the zip name, or the official URL when neither is set."""
    base_url = base_url or os.environ.get(BASE_URL_ENV)
    return f"{base_url.rstrip('/')}/{spec.archive_name}" if base_url else spec.url


def download_dataset(name: str, root="data", base_url: str | None = None, *,
                     keep_archive: bool = False) -> Path:
    """Download, check and install the dataset ``name``; return ``spec.dataset_dir(root)``.

    Does nothing when it is already installed. ``keep_archive`` keeps the downloaded archive in
    ``root`` (deleted by default once installed). Raises ConfigError for a synthetic name,
    DownloadError when the download fails or the archive is corrupt, DataError when the archive
    is not in the official layout or ``{root}/{folder}`` exists without being a complete download.
    """
    spec = get_dataset_spec(name)
    root = Path(root)
    if spec.synthetic:
        raise ConfigError(f"{name} is a synthetic dataset: there is nothing to download; generate it "
                          f"with `convlora data synth {name} --root {root}`.")
    target = install_dir(spec, root)
    if (target / COMPLETE_MARKER).is_file():
        return spec.dataset_dir(root)
    if target.exists():
        raise DataError(
            f"{target} exists but is not a complete download (no {COMPLETE_MARKER}): it was placed "
            f"by hand or left by another tool. Check it with `convlora data verify {name} --root "
            f"{root}`, or delete it and run `convlora data download {name} --root {root}` again."
        )
    root.mkdir(parents=True, exist_ok=True)
    for stale in root.glob(f"{_TMP_PREFIX}*"):
        shutil.rmtree(stale, ignore_errors=True)  # left by an interrupted run
    if spec.layout == "trans10k":
        archive, source = _download_from_drive(spec, root), f"gdrive:{spec.gdrive_id}"
    else:
        source = dataset_url(spec, base_url)
        archive = download_file(source, root / spec.archive_name, spec.sha256, desc=spec.archive_name)
    if spec.layout == "csv" or zipfile.is_zipfile(archive):
        _check_zip(archive, source)
    _install(spec, archive, root, source)
    if not keep_archive:
        archive.unlink()
    return spec.dataset_dir(root)


def _check_zip(archive: Path, source: str) -> None:
    """DownloadError (and the archive deleted) when ``archive`` is not an intact zip."""
    try:
        with zipfile.ZipFile(archive) as zf:
            bad = zf.testzip()
    except (zipfile.BadZipFile, OSError) as err:
        bad = f"not a readable zip ({err})"
    if bad is not None:
        archive.unlink()
        raise DownloadError(f"the downloaded archive {archive.name} from {source} is corrupt (first bad "
                            f"member: {bad}); it was deleted. Run the same command again to retry.")


def _install(spec: DatasetSpec, archive: Path, root: Path, source: str) -> None:
    """Extract ``archive`` beside ``root/{folder}``, check the layout, mark, rename into place."""
    staging = Path(tempfile.mkdtemp(prefix=_TMP_PREFIX, dir=root))
    try:
        tree = staging / spec.folder
        try:
            _extract(archive, tree)
        except (OSError, zipfile.BadZipFile, tarfile.TarError) as err:
            raise DataError(f"extracting {archive} failed ({err}); nothing was installed. Free disk "
                            "space or fix permissions, then run the same command again.") from None
        if spec.layout == "trans10k":
            _hoist_split_folders(tree, spec, archive)
        pairs, problems = check_layout(spec, staging)
        if problems:
            archive.unlink()
            listed = "\n  ".join(p.replace(f"{tree}{os.sep}", "") for p in problems[:10])
            raise DataError(
                f"{archive.name} is not in the official layout of {spec.title} ({len(problems)} "
                f"problem(s) inside the archive, e.g.\n  {listed}\n). It was deleted and nothing was installed; check "
                f"that {source} is the right file, or place the data by hand under "
                f"{install_dir(spec, root)}."
            )
        marker = {"dataset": spec.name, "source": source,
                  "counts": {split: len(split_pairs) for split, split_pairs in pairs.items()}}
        (tree / COMPLETE_MARKER).write_text(json.dumps(marker, indent=2) + "\n")
        os.replace(tree, install_dir(spec, root))
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _extract(archive: Path, into: Path) -> None:
    """Unpack a zip or tar archive into the folder ``into``."""
    into.mkdir()
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as zf:
            zf.extractall(into)
    elif tarfile.is_tarfile(archive):
        with tarfile.open(archive) as tf:
            tf.extractall(into, filter="data")
    else:
        raise DataError(f"{archive} is neither a zip nor a tar archive; delete it and download again.")


def _hoist_split_folders(tree: Path, spec: DatasetSpec, archive: Path) -> None:
    """Make ``tree`` itself hold the split folders, whatever folder the archive wraps them in
    (the Google Drive archive holds ``Trans10K_cls12/{train,validation,test}``)."""
    train = spec.splits["train"]
    found = sorted((p.parent for p in tree.rglob(train) if (p / "images").is_dir()),
                   key=lambda folder: len(folder.parts))
    if not found:
        raise DataError(f"{archive.name} holds no {train}/images folder: not the Trans10K-v2 archive. "
                        f"Place the split folders by hand under {tree.parent.parent / spec.folder}.")
    if found[0] != tree:
        wrapper = tree / found[0].relative_to(tree).parts[0]
        moved = {child.name for child in found[0].iterdir()}
        for name in moved:
            os.replace(found[0] / name, tree / name)
        if wrapper.name not in moved:
            shutil.rmtree(wrapper)


def _download_from_drive(spec: DatasetSpec, root: Path) -> Path:
    """Download Trans10K-v2's archive from Google Drive with gdown; DownloadError when it fails."""
    archive = root / f"{spec.folder}.archive"
    if archive.is_file():
        return archive
    by_hand = (
        f"Download it by hand from https://drive.google.com/file/d/{spec.gdrive_id} (or the Baidu "
        f"mirror https://pan.baidu.com/s/1P-2l-Q2brbnwRd2kXi--Dg, code oqms) and either copy the "
        f"archive to {archive.resolve()} and run this command again, or unpack it so that the folders "
        f"train/, validation/ and test/ (each with images/ and masks_12/) lie under "
        f"{install_dir(spec, root).resolve()}."
    )
    try:
        import gdown
        from gdown.exceptions import FileURLRetrievalError
    except ImportError:
        raise DownloadError(f"Trans10K-v2 is on Google Drive, which needs `pip install gdown`. {by_hand}") from None
    partial = archive.with_name(archive.name + ".part")
    try:
        result = gdown.download(id=spec.gdrive_id, output=str(partial), quiet=False, resume=True)
    except (OSError, FileURLRetrievalError) as err:
        raise DownloadError(f"could not download Trans10K-v2 from Google Drive ({err}). {by_hand}") from None
    if result is None or not partial.is_file():
        raise DownloadError(f"Google Drive did not deliver Trans10K-v2 (quota or access limit). {by_hand}")
    os.replace(partial, archive)
    return archive


def ensure_dataset(spec: DatasetSpec, root, log=print) -> None:
    """Make sure ``spec``'s files are under ``root``: generate a missing synthetic analog, or
    raise a :class:`DataError` that says how to download a missing real dataset."""
    if spec.dataset_dir(root).exists():
        return
    if spec.synthetic:
        from convlora_lite.data.synthetic import generate_synthetic

        log(f"{spec.name} is not in {root}: generating it (synthetic, offline)...")
        generate_synthetic(spec.name, root)
        return
    raise DataError(f"Dataset {spec.name!r} is not in {Path(root).resolve()} (looked for {spec.dataset_dir(root)}). "
                    f"Download it with `convlora data download {spec.name} --root {root}`, or pass --root.")
