"""Resumable, checksummed, atomic file downloads with the standard library (urllib).

``download_file`` writes to ``dest + ".part"``, resumes an existing ``.part`` with an HTTP Range
request, checks the sha256 when one is given, and only then renames the ``.part`` to ``dest``
(``os.replace``, atomic on one file system). So a file at ``dest`` is always complete and
verified; an interrupted download leaves only the ``.part``, which the next call resumes.
"""
from __future__ import annotations

import hashlib
import http.client
import os
import re
import urllib.error
import urllib.request
from pathlib import Path

from convlora_lite.errors import DownloadError
from convlora_lite.progress import progress_bar


def cache_folder(cache_dir: str | os.PathLike | None = None) -> Path:
    """Where downloads are kept (checkpoints, probe data): ``cache_dir``, else ``$CONVLORA_CACHE``, else
    ``~/.cache/convlora_lite``."""
    if cache_dir is not None:
        return Path(cache_dir).expanduser()
    return Path(os.environ.get("CONVLORA_CACHE") or Path.home() / ".cache" / "convlora_lite").expanduser()

#: seconds to wait for a connection before giving up (offline machines fail fast).
CONNECT_TIMEOUT_S = 10.0
#: how many times one call resumes after the connection drops mid-file.
MAX_RESUMES = 3
_CHUNK = 1 << 20


def sha256_file(path, chunk_size: int = _CHUNK) -> str:
    """The hex sha256 digest of the file at ``path``, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk_size):
            digest.update(block)
    return digest.hexdigest()


def download_file(url: str, dest, sha256: str | None = None, *, desc: str | None = None,
                  timeout: float = 30.0) -> Path:
    """Download ``url`` to ``dest`` and return ``Path(dest)``.

    Already present (and matching ``sha256`` when given) -> returned at once. Otherwise streams to
    ``dest.part`` with a progress bar, resuming what a previous call left there; restarts from zero
    when the server ignores the Range request (200 instead of 206) or the ``.part`` is longer than
    the file (416). A dropped connection is resumed up to ``MAX_RESUMES`` times.

    Raises DownloadError, saying the URL, the file and where to place it by hand, when the server
    cannot be reached (offline, DNS, refused; connecting times out after ``CONNECT_TIMEOUT_S``),
    answers an HTTP error, or the transfer stays incomplete; and when the sha256 does not match
    (the ``.part`` is then deleted so the next call starts afresh). ``timeout`` bounds each read.
    """
    dest = Path(dest)
    if dest.is_file():
        if sha256 is None or sha256_file(dest) == sha256.lower():
            return dest
        dest.unlink()  # not the expected file: never leave it looking valid
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    for attempt in range(MAX_RESUMES + 1):
        try:
            complete = _fetch_into(url, part, dest, desc or dest.name, timeout)
        except (ConnectionError, TimeoutError, http.client.HTTPException) as err:
            complete, reason = False, err
        else:
            reason = "the connection closed before the end of the file"
        if complete:
            break
    else:
        kept = part.stat().st_size if part.exists() else 0
        raise DownloadError(
            f"the download of {url} stopped before the end ({reason}); {kept} bytes are kept in "
            f"{part.resolve()}. Run the same command again to resume. " + _by_hand(url, dest)
        )
    if sha256 is not None:
        actual = sha256_file(part)
        if actual != sha256.lower():
            part.unlink()
            raise DownloadError(
                f"the downloaded file {dest.name} from {url} is corrupt (sha256 {actual}, expected "
                f"{sha256.lower()}); it was deleted. Run the same command again to retry."
            )
    os.replace(part, dest)
    return dest


def _fetch_into(url: str, part: Path, dest: Path, desc: str, timeout: float) -> bool:
    """One request: append the missing bytes to ``part``. True when ``part`` is now complete."""
    offset = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(url, headers={"Range": f"bytes={offset}-"} if offset else {})
    try:
        response = _OPENER.open(request, timeout=timeout)
    except urllib.error.HTTPError as err:
        if err.code == 416 and offset:  # the .part is at or past the end of the file
            total = _total_from_content_range(err.headers.get("Content-Range"))
            if total == offset:
                return True
            part.unlink()
            return _fetch_into(url, part, dest, desc, timeout)
        raise DownloadError(f"{url} answered HTTP {err.code} ({err.reason}). " + _by_hand(url, dest)) from None
    except (urllib.error.URLError, OSError) as err:
        reason = getattr(err, "reason", err)
        raise DownloadError(f"could not reach {url} ({reason}). " + _by_hand(url, dest)) from None
    with response:
        if response.status == 206:
            start = _start_from_content_range(response.headers.get("Content-Range"))
            if start != offset:  # resumed somewhere else: start afresh on the next attempt
                part.unlink()
                return False
            total = _total_from_content_range(response.headers.get("Content-Range"))
            mode = "ab"
        else:  # 200 (or a file:// URL): the whole file, from the start
            offset, mode = 0, "wb"
            length = response.headers.get("Content-Length")
            total = int(length) if length is not None else None
        with open(part, mode) as out, progress_bar(total=total, initial=offset, desc=desc, unit="B",
                                                    unit_scale=True, unit_divisor=1024) as bar:
            while block := response.read(_CHUNK):
                out.write(block)
                bar.update(len(block))
    return total is None or part.stat().st_size == total


def _start_from_content_range(header: str | None) -> int | None:
    match = re.match(r"bytes (\d+)-\d+/", header or "")
    return int(match.group(1)) if match else None


def _total_from_content_range(header: str | None) -> int | None:
    match = re.search(r"/(\d+)\s*$", header or "")
    return int(match.group(1)) if match else None


def _by_hand(url: str, dest: Path) -> str:
    return (f"To install it by hand, download {url} on a machine with internet access and place "
            f"the file {dest.name} at {dest.resolve()}.")


class _ConnectFast:
    """Connects within ``CONNECT_TIMEOUT_S``, then reads with the request's own timeout."""

    def connect(self):
        read_timeout = self.timeout
        self.timeout = min(CONNECT_TIMEOUT_S, read_timeout)
        try:
            super().connect()
        finally:
            self.timeout = read_timeout
        self.sock.settimeout(read_timeout)


class _HTTPConnection(_ConnectFast, http.client.HTTPConnection):
    pass


class _HTTPSConnection(_ConnectFast, http.client.HTTPSConnection):
    pass


class _HTTPHandler(urllib.request.HTTPHandler):
    def http_open(self, req):
        return self.do_open(_HTTPConnection, req)


class _HTTPSHandler(urllib.request.HTTPSHandler):
    def https_open(self, req):
        return self.do_open(_HTTPSConnection, req, context=self._context)


_OPENER = urllib.request.build_opener(_HTTPHandler, _HTTPSHandler)
