"""A dataset's archive: check it, and unpack it into the official layout.

The same checks apply to an archive just downloaded and to one the user downloaded by hand
(:mod:`convlora_lite.data.install` calls both):

* :func:`check_archive` -- the file itself: the sha256 when the registry has one, else (and
  also then) a zip's own CRCs (``zipfile.ZipFile.testzip``). The six AutoGluon archives must be
  zips; Trans10K-v2's Google Drive archive may be a zip or a tar (any compression ``tarfile``
  reads).
* :func:`unpack_archive` -- extracts it into ``{staging}/{folder}``, lifts Trans10K-v2's split
  folders out of the folder the archive wraps them in (the Drive archive holds
  ``Trans10K_cls12/{train,validation,test}``), and checks the official layout there
  (:func:`~convlora_lite.data.verify.check_layout`: every split listed, every listed file present).

Both raise :class:`ArchiveProblem` (:class:`CorruptArchive` for a damaged file) with what is
wrong; the caller, which knows where the file came from, adds what to do about it.
"""
from __future__ import annotations

import gzip
import lzma
import os
import shutil
import tarfile
import zipfile
import zlib
from pathlib import Path

from convlora_lite.data.registry import DatasetSpec
from convlora_lite.data.verify import check_layout
from convlora_lite.errors import DataError
from convlora_lite.http import sha256_file

#: what reading a damaged zip or tar (or its compressed stream) raises.
_CORRUPT = (zipfile.BadZipFile, tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile, lzma.LZMAError)


class ArchiveProblem(DataError):
    """An archive that is not the dataset's official one: its message says what is wrong."""


class CorruptArchive(ArchiveProblem):
    """An archive whose bytes are damaged: wrong sha256, a bad CRC, truncated, not an archive."""


def check_archive(archive: Path, spec: DatasetSpec) -> None:
    """Check the file ``archive`` of ``spec``: its sha256 when the registry has one (the only
    place that checks it), then a zip's CRCs.

    Raises :class:`CorruptArchive` when a check fails, or when the file is not a zip although
    ``spec`` is one of the AutoGluon zips (csv layout), or is neither a zip nor a tar.
    """
    expected = spec.sha256.lower() if spec.sha256 else None
    if expected is not None and (actual := sha256_file(archive)) != expected:
        raise CorruptArchive(f"its sha256 is {actual}, the registry expects {expected}")
    if zipfile.is_zipfile(archive):
        try:
            with zipfile.ZipFile(archive) as zf:
                bad = zf.testzip()
        except (zipfile.BadZipFile, OSError) as err:
            raise CorruptArchive(f"not a readable zip ({err})") from None
        if bad is not None:
            raise CorruptArchive(f"first bad member: {bad}")
    elif spec.layout == "csv":
        raise CorruptArchive(f"not a readable zip (the official {spec.archive_name} is a zip)")
    elif not tarfile.is_tarfile(archive):
        raise CorruptArchive("neither a zip nor a tar archive")


def unpack_archive(spec: DatasetSpec, archive: Path, staging: Path) -> dict:
    """Extract ``archive`` (already through :func:`check_archive`) so that ``staging`` is a data
    root holding ``spec`` (at ``{staging}/{folder}``) in the official layout; returns the pair
    count per split.

    Raises :class:`CorruptArchive` when the archive cannot be read to the end,
    :class:`ArchiveProblem` when its content is not the official layout (the message lists the
    first problems, paths relative to ``{staging}/{folder}``), and :class:`DataError` when
    writing the files fails (disk full, permissions).
    """
    tree = staging / spec.folder
    tree.mkdir()
    try:
        if zipfile.is_zipfile(archive):
            with zipfile.ZipFile(archive) as zf:
                zf.extractall(tree)
        else:
            with tarfile.open(archive) as tf:
                tf.extractall(tree, filter="data")
    except _CORRUPT as err:
        raise CorruptArchive(f"it cannot be read to the end ({err})") from None
    except OSError as err:
        raise DataError(f"extracting {archive} failed ({err}); nothing was installed. Free disk "
                        "space or fix permissions, then run the same command again.") from None
    if spec.layout == "trans10k":
        _hoist_split_folders(tree, spec, archive)
    pairs, problems = check_layout(spec, staging)
    if problems:
        listed = "\n  ".join(p.replace(f"{tree}{os.sep}", "") for p in problems[:10])
        raise ArchiveProblem(f"{archive.name} is not in the official layout of {spec.title} ({len(problems)} "
                             f"problem(s) inside the archive, e.g.\n  {listed}\n).")
    return {split: len(split_pairs) for split, split_pairs in pairs.items()}


def _hoist_split_folders(tree: Path, spec: DatasetSpec, archive: Path) -> None:
    """Make ``tree`` itself hold the split folders, whatever folder the archive wraps them in."""
    train = spec.splits["train"]
    found = sorted((p.parent for p in tree.rglob(train) if (p / "images").is_dir()),
                   key=lambda folder: len(folder.parts))
    if not found:
        raise ArchiveProblem(f"{archive.name} holds no {train}/images folder: it is not the "
                             f"{spec.title} archive.")
    if found[0] != tree:
        wrapper = tree / found[0].relative_to(tree).parts[0]
        moved = {child.name for child in found[0].iterdir()}
        for name in moved:
            os.replace(found[0] / name, tree / name)
        if wrapper.name not in moved:
            shutil.rmtree(wrapper)
