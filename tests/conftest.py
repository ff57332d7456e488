"""Shared fixtures.

* ``repo_root`` / ``shared_data``: the real data folder ``<repo root>/../shared/data`` (tests that
  use it are marked ``realdata`` and skip when it is absent).
* ``make_image_tree``: factory writing a tiny ``<root>/<domain>/<class>/<file>`` tree of real images.
* ``http_server``: a local HTTP server on 127.0.0.1 (port 0) serving bytes the test registers,
  optionally misbehaving (lying Content-Length), and counting requests.
* ``closed_port_url``: a URL on 127.0.0.1 where nothing listens.
"""

from __future__ import annotations

import http.server
import socket
import threading
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from PIL import Image

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO_ROOT


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``<repo root>/../shared/data``, or skip the test when it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data folder {SHARED_DATA} is absent")
    return SHARED_DATA


# ---------------------------------------------------------------------------------------------
# tiny image trees
# ---------------------------------------------------------------------------------------------
def write_image(path: Path, *, size: tuple[int, int] = (8, 6), mode: str = "RGB", seed: int = 0,
                fmt: str | None = None) -> Path:
    """Write a small deterministic image (content depends on ``seed``)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    w, h = size
    rgb = Image.new("RGB", size)
    rgb.putdata([((x * 31 + seed * 17) % 256, (y * 47 + seed * 5) % 256, (x * y + seed) % 256)
                 for y in range(h) for x in range(w)])
    img = rgb.convert(mode) if mode != "RGB" else rgb
    img.save(path, format=fmt)
    return path


@pytest.fixture
def make_image_tree() -> Callable[..., list[str]]:
    """``make(root, domains, classes, n_per_class=2, size=(8, 6), ext=".jpg")`` -> sorted rel paths.

    Every image has distinct content, so a tree digest changes when any file changes.
    """

    def make(root: Path, domains: Sequence[str], classes: Sequence[str], n_per_class: int = 2,
             size: tuple[int, int] = (8, 6), ext: str = ".jpg") -> list[str]:
        rels = []
        seed = 0
        for d in domains:
            for c in classes:
                for i in range(n_per_class):
                    seed += 1
                    rel = f"{d}/{c}/img_{i:03d}{ext}"
                    write_image(Path(root) / rel, size=size, seed=seed)
                    rels.append(rel)
        return sorted(rels)

    return make


# ---------------------------------------------------------------------------------------------
# local HTTP server
# ---------------------------------------------------------------------------------------------
@dataclass
class _Route:
    body: bytes
    send_bytes: int | None = None  # send only this many bytes of the body (Content-Length stays full)


@dataclass
class LocalServer:
    """Handle returned by the ``http_server`` fixture."""

    port: int
    routes: dict[str, _Route] = field(default_factory=dict)
    hits: Counter = field(default_factory=Counter)

    def add(self, name: str, body: bytes, *, send_bytes: int | None = None) -> str:
        """Serve ``body`` at ``/<name>``; with ``send_bytes`` the response announces the full
        Content-Length but the connection closes after ``send_bytes`` bytes. Returns the URL."""
        self.routes["/" + name] = _Route(body, send_bytes)
        return self.url(name)

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.port}/{name}"


@pytest.fixture
def http_server() -> Iterator[LocalServer]:
    server_ref: dict[str, LocalServer] = {}

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.0"

        def do_GET(self) -> None:  # noqa: N802
            srv = server_ref["s"]
            path = self.path.split("?", 1)[0]
            srv.hits[path] += 1
            route = srv.routes.get(path)
            if route is None:
                self.send_error(404, "not found")
                return
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(len(route.body)))
            self.end_headers()
            body = route.body if route.send_bytes is None else route.body[: route.send_bytes]
            try:
                self.wfile.write(body)
                self.wfile.flush()
            except (BrokenPipeError, ConnectionResetError):
                pass
            self.close_connection = True

        def log_message(self, *args: object) -> None:  # keep test output quiet
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    handle = LocalServer(port=httpd.server_address[1])
    server_ref["s"] = handle
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield handle
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


@pytest.fixture
def closed_port_url() -> str:
    """A URL on 127.0.0.1 whose port was just closed (connection refused)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/missing.zip"


@pytest.fixture(scope="module")
def one_torch_thread() -> Iterator[None]:
    """torch on one thread for the test (small CPU tests run faster and do not fight over the cores)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def kill_at_checkpoint() -> Callable[[list[str], Path, Path], None]:
    """``kill(cmd, ckpt_dir, cwd)``: start ``cmd``, SIGKILL it once ``ckpt_dir/epoch-0002.pt`` exists.

    Fails the test when the process exits first or no checkpoint appears within 240 s (a hang guard, not a
    timing assertion); asserts the process died of the SIGKILL.
    """
    import signal
    import subprocess
    import time

    def kill(cmd: list[str], ckpt_dir: Path, cwd: Path) -> None:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=cwd)
        try:
            deadline = time.monotonic() + 240
            while not (ckpt_dir / "epoch-0002.pt").exists():
                if proc.poll() is not None:
                    pytest.fail(f"training script exited early ({proc.returncode}): {proc.stderr.read().decode()}")
                if time.monotonic() > deadline:
                    pytest.fail("no second checkpoint appeared")
                time.sleep(0.01)
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            proc.stdout.close()
            proc.stderr.close()
        assert proc.returncode == -signal.SIGKILL

    return kill
