"""Imagenette: a small public ImageNet subset (10 classes) for the linear probe of notebook 01.

fast.ai's `Imagenette <https://github.com/fastai/imagenette>`_ (``imagenette2-160``: shorter side
160 px, 94 MB, 9,469 train / 3,925 val images) is fetched in about a minute on Colab; a user's
ImageNet folder (``<root>/<class>/<images>``) is the alternative. :func:`imagenette` downloads the
archive into the cache folder (resumable, ``.part``), unpacks it into a staging folder, checks its
layout (``train`` and ``val``, each with the 10 wnid folders holding images) and only then renames
it into place, so ``{root}/imagenette2-160`` is always complete.

No sha256 is known to this project for the archive (none could be computed from the real file
where this was written, and none is invented): the check is the layout, and ``sha256=`` verifies
the download when you pass one.
"""
from __future__ import annotations

import os
import shutil
import tarfile
from pathlib import Path

from convlora_lite.errors import DataError, DownloadError
from convlora_lite.http import download_file

IMAGENETTE_URL = "https://s3.amazonaws.com/fast-ai-imageclas/imagenette2-160.tgz"
#: Imagenette's 10 ImageNet classes: wnid -> name (fast.ai's README).
IMAGENETTE_CLASSES = {
    "n01440764": "tench",
    "n02102040": "English springer",
    "n02979186": "cassette player",
    "n03000684": "chain saw",
    "n03028079": "church",
    "n03394916": "French horn",
    "n03417042": "garbage truck",
    "n03425413": "gas pump",
    "n03445777": "golf ball",
    "n03888605": "parachute",
}
_IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")


def _folder_name(url: str) -> str:
    name = url.rsplit("/", 1)[-1]
    for suffix in (".tgz", ".tar.gz", ".tar"):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def check_imagenette_layout(folder: Path) -> None:
    """A :class:`DataError` unless ``folder`` holds ``train`` and ``val``, each with a folder of
    images for every wnid of :data:`IMAGENETTE_CLASSES`."""
    for split in ("train", "val"):
        for wnid in IMAGENETTE_CLASSES:
            sub = folder / split / wnid
            if not sub.is_dir() or not any(p.suffix.lower() in _IMAGE_SUFFIXES for p in sub.iterdir()):
                raise DataError(f"{folder} is not Imagenette: {split}/{wnid} is missing or holds no images.")


def imagenette(root=None, url: str | None = None, sha256: str | None = None) -> Path:
    """The folder of the unpacked Imagenette (``.../imagenette2-160`` with ``train`` and ``val``),
    downloaded and unpacked first when absent.

    Args:
        root: where the archive and the folder go (default: the checkpoint cache folder,
            ``$CONVLORA_CACHE`` or ``~/.cache/convlora_lite``).
        url: the archive (default ``$CONVLORA_IMAGENETTE_URL``, else :data:`IMAGENETTE_URL`).
        sha256: the archive's digest, checked when given.
    """
    from convlora_lite.http import cache_folder

    url = url or os.environ.get("CONVLORA_IMAGENETTE_URL") or IMAGENETTE_URL
    root = cache_folder(root)
    folder = root / _folder_name(url)
    if folder.is_dir():
        return folder
    archive = download_file(url, root / url.rsplit("/", 1)[-1], sha256=sha256, desc="Imagenette")
    staging = root / f".{folder.name}.unpacking"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        try:
            with tarfile.open(archive) as tf:
                tf.extractall(staging, filter="data")
        except (tarfile.TarError, EOFError, OSError) as err:
            archive.unlink()
            raise DownloadError(f"The Imagenette archive from {url} is corrupt ({type(err).__name__}: {err}); it was "
                                "deleted. Run the same command again to download it afresh.") from err
        inner = staging / folder.name
        tree = inner if inner.is_dir() else staging
        check_imagenette_layout(tree)
        os.replace(tree, folder)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return folder
