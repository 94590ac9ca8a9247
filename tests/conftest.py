"""Shared test set-up: one thread (CI has 2 cores), deterministic seeds, a local file server."""
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import torch

torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


class _Handler(BaseHTTPRequestHandler):
    """GET with Range support; the server's flags decide how it misbehaves."""

    def do_GET(self):
        srv = self.server
        srv.requests.append((self.path, self.headers.get("Range")))
        data = srv.files.get(self.path)
        if data is None:
            self.send_error(404, "Not Found")
            return
        start = 0
        match = re.match(r"bytes=(\d+)-$", self.headers.get("Range") or "")
        if match and not srv.ignore_range:
            start = int(match.group(1))
            if start >= len(data):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(data)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        body = data[start:]
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if srv.cut_after:  # announce the whole body, send only part of it, hang up
            body = body[: srv.cut_after.pop(0)]
        self.wfile.write(body)

    def log_message(self, *args):
        pass


class FileServer(ThreadingHTTPServer):
    """Serves ``files`` (URL path -> bytes). ``ignore_range``: answer 200 with the whole file;
    ``cut_after``: byte counts after which successive responses hang up; ``requests`` logs
    ``(path, Range header)``."""

    daemon_threads = True

    def __init__(self):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.files, self.requests, self.cut_after, self.ignore_range = {}, [], [], False
        self.thread = threading.Thread(target=self.serve_forever, args=(0.05,), daemon=True)

    def url(self, path):
        return f"http://127.0.0.1:{self.server_address[1]}{path}"


@pytest.fixture
def server():
    srv = FileServer()
    srv.thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()


@pytest.fixture
def fake_run():
    """A finished run directory written through :class:`RunDir`, without training:
    ``fake_run(path, dataset, method, seed, test={split: {metric: value}}, history=[rows], **config)``.
    The config is the full ``TrainConfig.resolve`` of (dataset, method) on the ``cpu`` preset, with ``config``'s
    fields over it; ``metrics.json`` holds ``test`` and ``completed``; ``history`` rows go to ``history.csv``."""
    from convlora_lite.training import TrainConfig
    from convlora_lite.training.rundir import RunDir

    def write(path, dataset, method, seed, test=None, history=None, **config):
        run = RunDir(path)
        resolved = TrainConfig.resolve(dataset, method, "cpu", seed=seed, output_dir=str(run.path), **config)
        run.create()
        run.write_config(resolved.to_dict())
        if test is not None:
            run.write_metrics({"dataset": dataset, "method": method, "seed": seed, "test": test, "completed": True})
        if history is not None:
            run.write_history(history)
        return run.path

    return write
