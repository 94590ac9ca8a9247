"""Install a registered dataset under ``root``, and the one test of "installed" that all code uses.

**Installed** means that the completion marker ``{root}/{folder}/.convlora_complete.json`` exists
(for a synthetic analog: its own note ``SYNTHETIC.json``, see :mod:`.synthetic`).
:func:`is_installed` is that test. The command line (``convlora data download/install/verify``),
:func:`ensure_dataset` (called by ``fit`` and ``evaluate``, so by ``convlora train`` and the
sweeps) and the notebooks (:func:`download_dataset` and ``convlora_lite.training.run_data.ensure_synthetic``)
all use it. The marker is written only once the files passed their checks, and atomically
(a temporary file, then ``os.replace``). Three ways lead there:

* :func:`download_dataset` downloads the archive (the AutoGluon zip into ``{root}/{zip}.zip``,
  resumable, see :func:`~convlora_lite.http.download_file`; Trans10K-v2 from Google Drive through
  ``gdown``, imported only then) and installs it as below. An interrupted run leaves at most the
  archive (or its ``.part``, resumed next time) and a hidden staging folder that the next run deletes.
* :func:`install_dataset` with an archive the user downloaded: :mod:`.archives` checks it exactly
  like a download (sha256 when the registry has one, zip CRCs, the official layout, every listed
  file present) while extracting it into a hidden staging folder ``{root}/.extracting-*``; the
  marker is written there and only then is the folder renamed to ``{root}/{folder}``. The user's
  file is left as it is.
* :func:`install_dataset` with a folder (adoption): at its place (``{root}/{folder}``, or the
  folder of its split listings), :func:`~convlora_lite.data.verify.verify_dataset` checks every
  file and the marker is written when nothing is wrong. A folder elsewhere is copied into a
  staging folder, verified there, marked and renamed into place; with ``move=True`` it is moved
  to ``{root}/{folder}`` and adopted there. A folder with problems is not adopted; the error lists them.

So ``{root}/{folder}`` with its marker is always complete. Anything else there is "present but not
installed", and every error about it names the command that adopts it.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path

from convlora_lite.data import synthetic
from convlora_lite.data.archives import ArchiveProblem, CorruptArchive, check_archive, unpack_archive
from convlora_lite.data.registry import DatasetSpec, get_dataset_spec
from convlora_lite.data.verify import verify_dataset
from convlora_lite.errors import ConfigError, DataError, DownloadError
from convlora_lite.http import download_file
from convlora_lite.locking import exclusive

#: environment variable that replaces the official S3 prefix (a mirror, or a local folder).
BASE_URL_ENV = "CONVLORA_DATA_BASE_URL"
#: the file name of Trans10K-v2's archive on a mirror (a zip, as Google Drive serves it).
TRANS10K_MIRROR_NAME = "Trans10K_cls12.zip"
#: file written last into an installed dataset folder; its presence means "complete".
COMPLETE_MARKER = ".convlora_complete.json"
_TMP_PREFIX = ".extracting-"
#: the Baidu mirror of the Trans10K-v2 archive (PaddleViT's README), for users without Google Drive.
_TRANS10K_MIRROR = "https://pan.baidu.com/s/1P-2l-Q2brbnwRd2kXi--Dg, code oqms"
#: how Google Drive's download quota error begins (gdown passes it on, wrapped over lines).
_DRIVE_QUOTA = "too many users have viewed or downloaded this file recently"
#: how many problems the error of a refused folder lists.
_PROBLEMS_SHOWN = 20


def install_dir(spec: DatasetSpec, root) -> Path:
    """The folder one dataset occupies under ``root`` (``{root}/{folder}``)."""
    return Path(root) / spec.folder


def marker_path(spec: DatasetSpec, root) -> Path:
    """The file whose presence means that ``spec`` is installed under ``root``:
    ``{root}/{folder}/.convlora_complete.json``, or a synthetic analog's ``{dataset_dir}/SYNTHETIC.json``."""
    if spec.synthetic:
        return spec.dataset_dir(root) / synthetic.SYNTHETIC_MARKER
    return install_dir(spec, root) / COMPLETE_MARKER


def is_installed(dataset: str | DatasetSpec, root="data") -> bool:
    """True when ``dataset`` (a registry name or spec) is completely installed under ``root``."""
    spec = get_dataset_spec(dataset) if isinstance(dataset, str) else dataset
    return marker_path(spec, root).is_file()


def dataset_url(spec: DatasetSpec, base_url: str | None = None) -> str | None:
    """Where to download ``spec``'s archive: ``base_url`` (else ``$CONVLORA_DATA_BASE_URL``) +
    ``/`` + the zip name (Trans10K-v2: :data:`TRANS10K_MIRROR_NAME`), or the official URL when
    neither is set (``None`` for Trans10K-v2, which then comes from Google Drive)."""
    base_url = base_url or os.environ.get(BASE_URL_ENV)
    if not base_url:
        return spec.url
    return f"{base_url.rstrip('/')}/{spec.archive_name or TRANS10K_MIRROR_NAME}"


def where_to_fetch(spec: DatasetSpec) -> str:
    """Where a user downloads ``spec``'s archive by hand: the official URL, or the Google Drive
    page (with its file id and the Baidu mirror)."""
    if spec.gdrive_id is not None:
        return (f"https://drive.google.com/file/d/{spec.gdrive_id} (Google Drive file id {spec.gdrive_id}; "
                f"Baidu mirror {_TRANS10K_MIRROR})")
    return spec.url


def _install_command(spec: DatasetSpec, source, root) -> str:
    return f"convlora data install {spec.name} {source} --root {root}"


def _real_spec(name: str, root, action: str) -> DatasetSpec:
    """The spec of the real dataset ``name``; ConfigError for a synthetic analog."""
    spec = get_dataset_spec(name)
    if spec.synthetic:
        raise ConfigError(f"{name} is a synthetic dataset: there is nothing to {action}; generate it "
                          f"with `convlora data synth {name} --root {root}`.")
    return spec


def _not_installed(spec: DatasetSpec, root, then: str | None = None) -> DataError:
    """The error for ``{root}/{folder}`` present without its marker; ``then``: the command to run
    once it is deleted (default: the download)."""
    target = install_dir(spec, root)
    return DataError(
        f"{target} is present but not installed (it has no {COMPLETE_MARKER}: the data was placed by "
        f"hand, or a download or install was interrupted). Adopt it with "
        f"`{_install_command(spec, target, root)}`, which verifies every file first, or delete it "
        f"and run `{then or f'convlora data download {spec.name} --root {root}'}`."
    )


def ensure_dataset(spec: DatasetSpec, root, log=print) -> None:
    """Make sure ``spec`` is installed under ``root`` (:func:`is_installed`): generate a missing
    or incomplete synthetic analog, or raise a :class:`DataError` that names the command that
    downloads a missing real dataset, installs its archive, or adopts the folder already there."""
    if is_installed(spec, root):
        return
    if spec.synthetic:
        with exclusive(install_dir(spec, root), log=log):  # another process may be generating it
            if not is_installed(spec, root):
                log(f"{spec.name} is not in {root}: generating it (synthetic, offline)...")
                synthetic.generate_synthetic(spec.name, root)
        return
    if install_dir(spec, root).exists():
        raise _not_installed(spec, root)
    raise DataError(
        f"Dataset {spec.name!r} is not installed in {Path(root).resolve()} (looked for "
        f"{install_dir(spec, root)}). Download it with `convlora data download {spec.name} --root {root}`, "
        f"or fetch its archive by hand from {where_to_fetch(spec)} and run "
        f"`{_install_command(spec, 'ARCHIVE', root)}`; or pass --root."
    )


@contextmanager
def _staging(root: Path):
    """A new hidden folder ``{root}/.extracting-*`` (on the target's file system, so that the
    final ``os.replace`` is atomic), deleted on exit; those left by killed runs go first."""
    root.mkdir(parents=True, exist_ok=True)
    for stale in root.glob(f"{_TMP_PREFIX}*"):
        shutil.rmtree(stale, ignore_errors=True)
    staging = Path(tempfile.mkdtemp(prefix=_TMP_PREFIX, dir=root))
    try:
        yield staging
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _write_marker(folder: Path, spec: DatasetSpec, source: str, counts: dict) -> None:
    """Write ``{folder}/.convlora_complete.json`` (dataset, source, pairs per split) atomically."""
    partial = folder / f"{COMPLETE_MARKER}.part"
    partial.write_text(json.dumps({"dataset": spec.name, "source": source, "counts": counts}, indent=2) + "\n")
    os.replace(partial, folder / COMPLETE_MARKER)


def _put_in_place(spec: DatasetSpec, staging: Path, root: Path, source: str, counts: dict) -> None:
    """Mark the checked dataset in ``staging`` and rename it to ``{root}/{folder}``."""
    tree = install_dir(spec, staging)
    _write_marker(tree, spec, source, counts)
    os.replace(tree, install_dir(spec, root))


# -------------------------------------------------------------------------------- download


def download_dataset(name: str, root="data", base_url: str | None = None, *,
                     keep_archive: bool = False) -> Path:
    """Download, check and install the dataset ``name``; return ``spec.dataset_dir(root)``.

    Does nothing when it is already installed. ``keep_archive`` keeps the downloaded archive in
    ``root`` (deleted by default once installed). Raises ConfigError for a synthetic name,
    DownloadError when the download fails or the archive is corrupt (both say which file to fetch
    by hand, from where, and the ``convlora data install`` command to run then), DataError when
    the archive is not in the official layout or ``{root}/{folder}`` is present but not installed.
    """
    spec = _real_spec(name, root, "download")
    root = Path(root)
    if is_installed(spec, root):
        return spec.dataset_dir(root)
    if install_dir(spec, root).exists():
        raise _not_installed(spec, root)
    root.mkdir(parents=True, exist_ok=True)
    source = dataset_url(spec, base_url)
    if source is None:  # Trans10K-v2 without a mirror
        archive, source = _download_from_drive(spec, root), f"gdrive:{spec.gdrive_id}"
    else:
        archive = _download_zip(spec, source, root)
    try:
        with _staging(root) as staging:
            check_archive(archive, spec)
            counts = unpack_archive(spec, archive, staging)
            _put_in_place(spec, staging, root, source, counts)
    except ArchiveProblem as err:
        archive.unlink()
        if isinstance(err, CorruptArchive):
            raise DownloadError(f"the downloaded archive {archive.name} from {source} is corrupt ({err}); it "
                                "was deleted. Run the same command again to retry.") from None
        raise DataError(f"{err} It was deleted and nothing was installed; check that {source} is the right "
                        f"file, or install the data by hand (`{_install_command(spec, 'FOLDER', root)}`).") from None
    if not keep_archive:
        archive.unlink()
    return spec.dataset_dir(root)


def _download_zip(spec: DatasetSpec, url: str, root: Path) -> Path:
    """Download ``url`` to ``{root}/{zip}``; a failure says how to install the zip by hand."""
    name = url.rsplit("/", 1)[-1]
    try:
        return download_file(url, root / name, desc=name)
    except DownloadError as err:
        raise DownloadError(
            f"{err}\nOr fetch {name} from {url} on a machine with internet access and run "
            f"`{_install_command(spec, f'PATH/TO/{name}', root)}`: it is checked like a download."
        ) from None


def _download_from_drive(spec: DatasetSpec, root: Path) -> Path:
    """Download Trans10K-v2's archive from Google Drive with gdown; DownloadError when it fails."""
    archive = root / f"{spec.folder}.archive"
    if archive.is_file():
        return archive
    by_hand = (
        f"Fetch the Trans10K-v2 archive by hand: open {where_to_fetch(spec)} in a browser, download "
        f"the file as it is (zip or tar), then run `{_install_command(spec, 'PATH/TO/ARCHIVE', root)}`: it "
        f"is checked like a download (a folder you unpacked it to works too). Copying the archive to "
        f"{archive.resolve()} and running this command again also works."
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
        if _DRIVE_QUOTA in " ".join(str(err).split()).lower():
            raise DownloadError(
                f"Google Drive refuses to let scripts download the Trans10K-v2 archive for now (\"{_DRIVE_QUOTA}\"; "
                f"the limit lifts within a day, and a browser download usually works at once). {by_hand}"
            ) from None
        raise DownloadError(f"could not download Trans10K-v2 from Google Drive ({err}). {by_hand}") from None
    if result is None or not partial.is_file():
        raise DownloadError(f"Google Drive did not deliver Trans10K-v2 (quota or access limit). {by_hand}")
    os.replace(partial, archive)
    return archive


# -------------------------------------------------------------------------------- install by hand


def install_dataset(name: str, source, root="data", *, move: bool = False, progress: bool = True,
                    log=print) -> Path:
    """Install the dataset ``name`` under ``root`` from ``source``; return ``spec.dataset_dir(root)``.

    ``source`` is an archive the user downloaded (the official zip, or Trans10K-v2's archive as
    Google Drive serves it: zip or tar), checked like a download and left as it is; or a folder
    holding the dataset in its layout (the folder of the split CSVs or split folders, or the
    folder that contains that one, as the zips unpack to ``{folder}/{folder}/``). A folder at
    ``{root}/{folder}`` is adopted where it is after a full :func:`verify_dataset`; one elsewhere
    is copied into place (``move=True``: moved) and verified. Nothing is done, apart from saying
    so through ``log``, when the dataset is already installed. ``progress`` shows verification
    progress bars.

    Raises ConfigError for a synthetic name, and DataError when ``source`` does not exist, the
    archive is corrupt or not in the official layout, the folder has problems (the first 20
    listed, and how many more), or ``{root}/{folder}`` is present but not installed while
    ``source`` is elsewhere.
    """
    spec = _real_spec(name, root, "install")
    root, source = Path(root), Path(source)
    target = install_dir(spec, root)
    if not source.exists():
        raise DataError(f"{source} does not exist. Give the downloaded archive of {spec.name}, or the folder that "
                        f"holds the dataset; the archive comes from {where_to_fetch(spec)}.")
    if is_installed(spec, root):
        inside = source.resolve().is_relative_to(target.resolve())
        log(f"{spec.name} is already installed at {target}; nothing was done."
            + ("" if inside else f" Delete that folder first to install {source} instead."))
    elif source.is_dir():
        _adopt_folder(spec, source, root, move, progress)
    else:
        _install_archive(spec, source, root)
    return spec.dataset_dir(root)


def _install_archive(spec: DatasetSpec, archive: Path, root: Path) -> None:
    """Check and install a user's archive of ``spec`` (left as it is)."""
    if install_dir(spec, root).exists():
        raise _not_installed(spec, root, then=_install_command(spec, archive, root))
    try:
        with _staging(root) as staging:
            check_archive(archive, spec)
            counts = unpack_archive(spec, archive, staging)
            _put_in_place(spec, staging, root, str(archive.resolve()), counts)
    except ArchiveProblem as err:
        what = f"{archive} is corrupt ({err})." if isinstance(err, CorruptArchive) else str(err)
        raise DataError(f"{what} Nothing was installed and the file was left as it is. Download the "
                        f"official archive again from {where_to_fetch(spec)}, then run "
                        f"`{_install_command(spec, archive, root)}`.") from None


def _adopt_folder(spec: DatasetSpec, folder: Path, root: Path, move: bool, progress: bool) -> None:
    """Adopt the dataset in ``folder``: in place, or copied (moved) into ``{root}/{folder}``."""
    found = _find_dataset_dir(spec, folder)
    target, destination = install_dir(spec, root), spec.dataset_dir(root)
    if found.resolve() == destination.resolve():
        _adopt_in_place(spec, root, progress)
        return
    if target.exists():
        if found.resolve().is_relative_to(target.resolve()):
            raise DataError(f"{found} lies inside {target} instead of being it: move what {found} holds up "
                            f"into {destination}, then run `{_install_command(spec, target, root)}`.")
        raise _not_installed(spec, root, then=_install_command(spec, folder, root))
    if move:
        destination.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(found, destination)
        _adopt_in_place(spec, root, progress, moved_from=found)
        return
    with _staging(root) as staging:
        staged = spec.dataset_dir(staging)
        try:
            shutil.copytree(found, staged)
        except (OSError, shutil.Error) as err:
            raise DataError(f"copying {found} into {root} failed ({err}); nothing was installed. Free disk "
                            "space or fix permissions, then run the same command again.") from None
        report = verify_dataset(spec.name, staging, progress=progress)
        if not report.ok:
            problems = [problem.replace(str(staged), str(found)) for problem in report.problems]
            raise _refused(spec, found, folder, root, problems, "Nothing was copied into place. ")
        _put_in_place(spec, staging, root, str(found.resolve()), report.counts)


def _adopt_in_place(spec: DatasetSpec, root: Path, progress: bool, moved_from: Path | None = None) -> None:
    """Verify ``spec`` where it lies under ``root`` and mark it; DataError listing the problems."""
    report = verify_dataset(spec.name, root, progress=progress)
    target = install_dir(spec, root)
    if not report.ok:
        note = "" if moved_from is None else f"It was moved there from {moved_from} but not adopted. "
        raise _refused(spec, report.dataset_dir, target, root, report.problems, note)
    _write_marker(target, spec, str((moved_from or report.dataset_dir).resolve()), report.counts)


def _refused(spec: DatasetSpec, checked: Path, retry_with: Path, root: Path, problems: list, note: str) -> DataError:
    """The error for the folder ``checked``, whose verification found ``problems``; it says to
    install ``retry_with`` again once they are fixed."""
    listed = "\n  - ".join(problems[:_PROBLEMS_SHOWN])
    more = f"\n  ... and {len(problems) - _PROBLEMS_SHOWN} more" if len(problems) > _PROBLEMS_SHOWN else ""
    return DataError(f"{checked} was not installed as {spec.name}: verifying it found {len(problems)} problem(s):"
                     f"\n  - {listed}{more}\n{note}Fix or remove the files named above, then run "
                     f"`{_install_command(spec, retry_with, root)}` again.")


def _find_dataset_dir(spec: DatasetSpec, folder: Path) -> Path:
    """The folder that holds ``spec``'s split listings (the CSVs, or Trans10K-v2's split
    folders): ``folder`` itself or a folder directly inside it (the zips unpack to
    ``{folder}/{folder}/``). DataError saying what was expected when there is none."""
    listing = spec.splits["train"]
    for candidate in (folder, *sorted(child for child in folder.iterdir() if child.is_dir())):
        if (candidate / listing).exists():
            return candidate
    if spec.layout == "csv":
        expected = f"the split CSVs ({', '.join(spec.splits.values())}) and the files they list"
    else:
        expected = f"the split folders {', '.join(spec.splits.values())} (each with images/ and masks_12/)"
    raise DataError(f"{folder} does not hold {spec.title}: there is no {listing} in it or in a folder directly "
                    f"inside it. Give the folder that holds {expected}, or the downloaded archive.")
