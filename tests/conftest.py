"""Shared fixtures.

* ``repo_root`` / ``shared_data``: the real data folder ``<repo root>/../shared/data`` (tests that
  use it are marked ``realdata`` and skip when it is absent).
* ``make_image_tree``: factory writing a tiny ``<root>/<domain>/<class>/<file>`` tree of real images.
* ``http_server``: a local HTTP server on 127.0.0.1 (port 0) serving bytes the test registers,
  optionally misbehaving (lying Content-Length), and counting requests.
* ``closed_port_url``: a URL on 127.0.0.1 where nothing listens.
* ``checkout_env`` / ``kill_at_checkpoint``: subprocesses import THIS checkout (absolute PYTHONPATH, checked in
  the child); a child script signals the test by a file instead of the test sleeping.
"""

from __future__ import annotations

import http.server
import json
import os
import socket
import textwrap
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


def checkout_env() -> dict[str, str]:
    """Environment for a test's Python subprocess: ``PYTHONPATH=<this checkout>/src:<this checkout>`` (absolute),
    so the child imports the code under test whatever its cwd, an inherited (maybe relative) PYTHONPATH or an
    editable install of another checkout would give (PYTHONPATH entries precede site-packages' .pth paths)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO_ROOT / "src"), str(REPO_ROOT)])
    return env


#: Source for a child script: ``signal_ready(path, **info)`` atomically writes ``path`` (JSON: ``info`` plus
#: the ``dahash`` package file the child imported), then the child waits to be killed (``wait_for_kill``).
CHILD_SIGNAL_SRC = textwrap.dedent(
    """
    def signal_ready(path, **info):
        import json, os, dahash
        with open(str(path) + ".tmp", "w") as f:
            json.dump({"dahash": dahash.__file__, **info}, f)
        os.replace(str(path) + ".tmp", str(path))

    def wait_for_kill():
        import time
        while True:
            time.sleep(60)
    """
)


def assert_imports_checkout(dahash_file: str) -> None:
    """The child imported ``dahash`` from this checkout (not another clone or an installed copy)."""
    assert Path(dahash_file).resolve() == (REPO_ROOT / "src" / "dahash" / "__init__.py").resolve(), dahash_file


@pytest.fixture
def kill_at_checkpoint() -> Callable[[list[str], Path, Path], dict]:
    """``kill(cmd, ready, cwd) -> info``: start ``cmd`` (env: :func:`checkout_env`), wait until the child signals
    by writing ``ready`` (:data:`CHILD_SIGNAL_SRC`: it does so once the checkpoint to resume from is on disk, then
    waits), check the child imported this checkout's ``dahash``, SIGKILL it, and return the signal's JSON.

    Fails the test when the process exits first or no signal comes within 240 s (a hang guard, not a timing
    assertion); asserts the process died of the SIGKILL.
    """
    import signal
    import subprocess
    import time

    def kill(cmd: list[str], ready: Path, cwd: Path) -> dict:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=cwd, env=checkout_env())
        try:
            deadline = time.monotonic() + 240
            while not ready.exists():
                if proc.poll() is not None:
                    pytest.fail(f"child exited before its signal ({proc.returncode}): {proc.stderr.read().decode()}")
                if time.monotonic() > deadline:
                    pytest.fail(f"no signal {ready} from the child within 240 s")
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
        info = json.loads(ready.read_text())
        assert_imports_checkout(info["dahash"])
        return info

    return kill
