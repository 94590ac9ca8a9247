"""download_file against a local HTTP server (127.0.0.1, random port) that can misbehave.

``FileServer`` is also used by test_fetch.py.
"""
import hashlib
import socket

import pytest

from convlora_lite.errors import DownloadError
from convlora_lite.http import MAX_RESUMES, download_file, sha256_file

PAYLOAD = bytes(range(256)) * 40  # 10 KiB
DIGEST = hashlib.sha256(PAYLOAD).hexdigest()


def _serve(server, data=PAYLOAD, path="/files/weights.bin"):
    server.files[path] = data
    return server.url(path)


def test_sha256_file_matches_hashlib(tmp_path):
    (tmp_path / "f").write_bytes(PAYLOAD)
    assert sha256_file(tmp_path / "f", chunk_size=1000) == DIGEST


def test_good_download_is_verified_and_renamed(server, tmp_path):
    dest = tmp_path / "sub" / "weights.bin"
    assert download_file(_serve(server), dest, DIGEST) == dest
    assert dest.read_bytes() == PAYLOAD
    assert not dest.with_name("weights.bin.part").exists()
    assert server.requests == [("/files/weights.bin", None)]


def test_present_and_valid_returns_without_a_request(server, tmp_path):
    dest = tmp_path / "weights.bin"
    dest.write_bytes(PAYLOAD)
    download_file(_serve(server), dest, DIGEST)
    download_file(_serve(server), dest)  # no checksum: presence is enough
    assert server.requests == []


def test_present_but_wrong_file_is_downloaded_again(server, tmp_path):
    dest = tmp_path / "weights.bin"
    dest.write_bytes(b"stale")
    download_file(_serve(server), dest, DIGEST.upper())
    assert dest.read_bytes() == PAYLOAD


def test_part_file_is_resumed_with_a_range_request(server, tmp_path):
    dest = tmp_path / "weights.bin"
    dest.with_name("weights.bin.part").write_bytes(PAYLOAD[:3000])
    download_file(_serve(server), dest, DIGEST)
    assert dest.read_bytes() == PAYLOAD
    assert server.requests == [("/files/weights.bin", "bytes=3000-")]


def test_cut_connection_is_resumed_within_the_call(server, tmp_path):
    server.cut_after = [4000, 2500]
    dest = tmp_path / "weights.bin"
    download_file(_serve(server), dest, DIGEST)
    assert dest.read_bytes() == PAYLOAD
    assert [r for _, r in server.requests] == [None, "bytes=4000-", "bytes=6500-"]


def test_connection_cut_every_time_keeps_the_part_for_next_call(server, tmp_path):
    server.cut_after = [1000] * (MAX_RESUMES + 1)
    dest = tmp_path / "weights.bin"
    with pytest.raises(DownloadError, match="Run the same command again to resume") as err:
        download_file(_serve(server), dest, DIGEST)
    assert str(dest.resolve()) in str(err.value)
    assert not dest.exists()
    part = dest.with_name("weights.bin.part")
    assert part.read_bytes() == PAYLOAD[: 1000 * (MAX_RESUMES + 1)]
    download_file(_serve(server), dest, DIGEST)  # the next call finishes it
    assert dest.read_bytes() == PAYLOAD and not part.exists()


def test_server_ignoring_range_restarts_cleanly(server, tmp_path):
    server.ignore_range = True
    dest = tmp_path / "weights.bin"
    dest.with_name("weights.bin.part").write_bytes(b"x" * 5000)  # not even a prefix of the file
    download_file(_serve(server), dest, DIGEST)
    assert dest.read_bytes() == PAYLOAD


@pytest.mark.parametrize("extra", [0, 123])
def test_part_at_or_past_the_end(server, tmp_path, extra):
    dest = tmp_path / "weights.bin"
    dest.with_name("weights.bin.part").write_bytes(PAYLOAD + b"y" * extra)
    download_file(_serve(server), dest, DIGEST)
    assert dest.read_bytes() == PAYLOAD
    expected = [f"bytes={len(PAYLOAD) + extra}-"] + ([None] if extra else [])
    assert [r for _, r in server.requests] == expected


@pytest.mark.parametrize("served", [PAYLOAD[:-100], PAYLOAD[:500] + b"\x00" + PAYLOAD[501:]],
                         ids=["truncated", "corrupted"])
def test_checksum_mismatch_deletes_everything(server, tmp_path, served):
    dest = tmp_path / "weights.bin"
    with pytest.raises(DownloadError, match="is corrupt .* Run the same command again to retry"):
        download_file(_serve(server, served), dest, DIGEST)
    assert list(tmp_path.iterdir()) == []


def test_http_404_says_where_to_place_the_file(server, tmp_path):
    dest = tmp_path / "weights.bin"
    url = server.url("/missing/weights.bin")
    with pytest.raises(DownloadError, match="HTTP 404") as err:
        download_file(url, dest)
    message = str(err.value)
    assert url in message and str(dest.resolve()) in message and "weights.bin" in message
    assert list(tmp_path.iterdir()) == []
    assert len(server.requests) == 1  # an HTTP error is not retried


def test_offline_closed_port_fails_at_once(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}/weights.bin"
    dest = tmp_path / "weights.bin"
    with pytest.raises(DownloadError, match="could not reach") as err:
        download_file(url, dest, DIGEST)
    assert url in str(err.value) and str(dest.resolve()) in str(err.value)
    assert list(tmp_path.iterdir()) == []


def test_unknown_host_fails_with_a_download_error(tmp_path):
    with pytest.raises(DownloadError, match="could not reach"):
        download_file("http://no-such-host.invalid/weights.bin", tmp_path / "weights.bin")


def test_file_url_works_for_local_mirrors(tmp_path):
    src = tmp_path / "mirror" / "weights.bin"
    src.parent.mkdir()
    src.write_bytes(PAYLOAD)
    dest = download_file(src.as_uri(), tmp_path / "out" / "weights.bin", DIGEST)
    assert dest.read_bytes() == PAYLOAD
