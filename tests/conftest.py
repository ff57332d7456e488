"""Shared fixtures.

* ``repo_root`` / ``shared_data``: the real data folder ``<repo root>/../shared/data`` (tests that
  use it are marked ``realdata`` and skip when it is absent).
* ``make_image_tree``: factory writing a tiny ``<root>/<domain>/<class>/<file>`` tree of real images.
* ``http_server``: a local HTTP server on 127.0.0.1 (port 0) serving bytes the test registers,
  optionally misbehaving (lying Content-Length), and counting requests. It can also stand in for
  Google Drive (``add_drive``): a confirmation page whose form leads to the file, as gdown expects.
* ``google_drive``: ``http_server`` made reachable as ``https://drive.google.com`` for requests and
  gdown, through the standard proxy settings (``HTTPS_PROXY`` pointing at the local server, which
  answers ``CONNECT`` itself with a certificate from a throw-away CA in ``REQUESTS_CA_BUNDLE``):
  nothing leaves 127.0.0.1.
* ``closed_port_url``: a URL on 127.0.0.1 where nothing listens.
* ``DAHASH_PROGRESS=0`` unless set: no progress bars (dahash.progress) in the tests' output.
* ``checkout_env`` / ``kill_at_checkpoint``: subprocesses import THIS checkout (absolute PYTHONPATH, checked in
  the child); a child script signals the test by a file instead of the test sleeping.
"""

from __future__ import annotations

import html
import http.server
import json
import os
import socket
import ssl
import textwrap
import subprocess
import threading
import time
import urllib.parse
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from PIL import Image

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"
# no progress bars in the tests and the pipelines they start (stderr holds only what a test looks at);
# tests/test_progress.py turns them on where it checks them; DAHASH_PROGRESS=1 shows them everywhere
os.environ.setdefault("DAHASH_PROGRESS", "0")


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
class _DriveFile:
    body: bytes
    filename: str
    token: str  # the uuid the confirmation page hands out; the download needs it
    send_bytes: int | None = None


#: hosts the ``google_drive`` fixture answers for (gdown fetches ``drive.google.com/uc?id=...`` and
#: follows the confirmation form to ``drive.usercontent.google.com/download``).
DRIVE_HOSTS = ("drive.google.com", "drive.usercontent.google.com", "docs.google.com")


def drive_confirmation_page(file_id: str, token: str) -> bytes:
    """Google Drive's "can't scan this file for viruses" page, reduced to what gdown parses.

    gdown (``get_url_from_gdrive_confirmation``) reads the page line by line and takes the first
    line holding ``<form id="download-form">``: the form's ``action`` plus its hidden inputs make
    the download URL. So the form and its inputs must be on one line, as on the real page.
    """
    q = html.escape
    form = (
        '<form id="download-form" action="https://drive.usercontent.google.com/download" method="get">'
        '<input type="submit" id="uc-download-link" class="goog-inline-block jfk-button" value="Download anyway"/>'
        f'<input type="hidden" name="id" value="{q(file_id)}"><input type="hidden" name="export" value="download">'
        f'<input type="hidden" name="confirm" value="t"><input type="hidden" name="uuid" value="{q(token)}"></form>'
    )
    return (
        "<!DOCTYPE html><html><head><title>Google Drive - Virus scan warning</title></head>\n"
        '<body><div class="uc-main"><p class="uc-warning-caption">Google Drive can\'t scan this file '
        "for viruses.</p>\n" + form + "\n</div></body></html>\n"
    ).encode()


@dataclass
class LocalServer:
    """Handle returned by the ``http_server`` fixture."""

    port: int
    routes: dict[str, _Route] = field(default_factory=dict)
    hits: Counter = field(default_factory=Counter)
    drive: dict[str, _DriveFile] = field(default_factory=dict)
    tls: ssl.SSLContext | None = None  # set by ``google_drive``: answer CONNECT for DRIVE_HOSTS

    def add_drive(self, file_id: str, body: bytes, filename: str, *, send_bytes: int | None = None) -> str:
        """Serve ``body`` as the Google Drive file ``file_id``: ``/uc?id=<file_id>`` answers with the
        confirmation page, whose form leads to ``/download?id=..&confirm=t&uuid=<token>``, which
        sends the file (``Content-Disposition: attachment``; with ``send_bytes`` only that many
        bytes of it). A ``/download`` without the page's token gets 403. Returns the Drive URL."""
        self.drive[file_id] = _DriveFile(body, filename, f"tok-{file_id}-{len(self.drive)}", send_bytes)
        return f"https://drive.google.com/uc?export=download&id={file_id}"

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

        def _send(self, body: bytes, *, send_bytes: int | None = None,
                  content_type: str = "application/octet-stream",
                  headers: dict[str, str] | None = None) -> None:
            self.send_response(200)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.end_headers()
            try:
                self.wfile.write(body if send_bytes is None else body[:send_bytes])
                self.wfile.flush()
            except (BrokenPipeError, ConnectionResetError, ssl.SSLError):
                pass
            self.close_connection = True

        def _drive(self, path: str, query: dict[str, list[str]]) -> bool:
            """Answer a Google Drive request (``/uc``, ``/download``); False if ``path`` is neither."""
            srv = server_ref["s"]
            file_id = query.get("id", [""])[0]
            f = srv.drive.get(file_id)
            if path == "/uc":
                if f is None:
                    self.send_error(404, "Google Drive: file not found")
                else:
                    self._send(drive_confirmation_page(file_id, f.token), content_type="text/html; charset=utf-8")
                return True
            if path == "/download" and srv.drive:
                if f is None:
                    self.send_error(404, "Google Drive: file not found")
                elif query.get("confirm") != ["t"] or query.get("uuid") != [f.token]:
                    self.send_error(403, "confirmation token missing or wrong")
                else:
                    self._send(f.body, send_bytes=f.send_bytes, headers={
                        "Content-Disposition": f'attachment; filename="{f.filename}"'})
                return True
            return False

        def do_GET(self) -> None:  # noqa: N802
            srv = server_ref["s"]
            path, _, query = self.path.partition("?")
            srv.hits[path] += 1
            if self._drive(path, urllib.parse.parse_qs(query)):
                return
            route = srv.routes.get(path)
            if route is None:
                self.send_error(404, "not found")
                return
            self._send(route.body, send_bytes=route.send_bytes)

        def do_CONNECT(self) -> None:  # noqa: N802
            """A proxy tunnel to a Drive host: answered here, over TLS with the test CA's certificate
            (no connection ever leaves 127.0.0.1); any other host is refused."""
            srv = server_ref["s"]
            host = self.path.rsplit(":", 1)[0]
            srv.hits["CONNECT " + host] += 1
            if srv.tls is None or host not in DRIVE_HOSTS:
                self.send_error(403, "this test proxy only answers for Google Drive hosts")
                return
            self.send_response(200, "Connection established")
            self.end_headers()
            self.close_connection = True
            try:
                tunnel = srv.tls.wrap_socket(self.connection, server_side=True)
            except (ssl.SSLError, OSError):
                return
            try:
                Handler(tunnel, self.client_address, self.server)  # serves the tunnelled request
            except (ssl.SSLError, OSError):
                pass
            finally:
                try:
                    tunnel.unwrap()
                except (ssl.SSLError, OSError, ValueError):
                    pass
                tunnel.close()

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
def google_drive(http_server: LocalServer, tmp_path_factory: pytest.TempPathFactory,
                 monkeypatch: pytest.MonkeyPatch) -> LocalServer:
    """``http_server`` standing in for Google Drive at ``https://drive.google.com`` (see ``add_drive``).

    requests (so gdown) reaches it through ``HTTPS_PROXY=http://127.0.0.1:<port>``; the server
    answers the ``CONNECT`` itself with a certificate for ``DRIVE_HOSTS`` issued by a throw-away CA
    (trustme) that ``REQUESTS_CA_BUNDLE`` names. Plain ``http://127.0.0.1`` URLs bypass the proxy.
    """
    import trustme

    ca = trustme.CA()
    cert = ca.issue_cert(*DRIVE_HOSTS)
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(ctx)
    http_server.tls = ctx
    bundle = tmp_path_factory.mktemp("drive-ca") / "ca.pem"
    ca.cert_pem.write_to_path(str(bundle))
    proxy = f"http://127.0.0.1:{http_server.port}"
    for var in ("HTTPS_PROXY", "https_proxy"):
        monkeypatch.setenv(var, proxy)
    for var in ("HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy", "CURL_CA_BUNDLE"):
        monkeypatch.delenv(var, raising=False)
    for var in ("NO_PROXY", "no_proxy"):
        monkeypatch.setenv(var, "127.0.0.1,localhost")
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(bundle))
    return http_server


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


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now (for a server a test starts)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until_answering(url: str, proc: subprocess.Popen, log: Path, *, within: float, every: float) -> None:
    """Poll ``url`` every ``every`` seconds until it answers HTTP 200; fails the test, with the end of ``log``
    (the server's output), when ``proc`` (the server) exits first or no answer comes within ``within`` seconds."""
    deadline = time.monotonic() + within
    while True:
        try:
            with urllib.request.urlopen(url, timeout=every * 4) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        assert proc.poll() is None, log.read_text()[-3000:]
        assert time.monotonic() < deadline, f"{url} did not answer within {within:g} s:\n" + log.read_text()[-3000:]
        time.sleep(every)


#: Source for a child script: ``signal_ready(path, **info)`` atomically writes ``path`` (JSON: ``info`` plus
#: the ``dahash`` package file the child imported), then the child waits to be killed (``wait_for_kill``);
#: ``kill_after_epoch(mode, ckpt)`` is the ``on_epoch`` callback doing both after epoch 2's checkpoint.
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

    def kill_after_epoch(mode, ckpt, epoch=2):
        # an on_epoch callback (called after the epoch's checkpoint is saved): in mode "slow", signal
        # ckpt.parent / "ready.json" once that epoch's checkpoint is on disk, then wait for the SIGKILL
        def on_epoch(record):
            if mode == "slow" and record["epoch"] == epoch:
                signal_ready(ckpt.parent / "ready.json", epoch=epoch)
                wait_for_kill()
        return on_epoch
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


@pytest.fixture
def kill_and_resume(kill_at_checkpoint) -> Callable[[list[str], Path, Path], dict]:
    """``resume(cmd, ckpt_dir, out) -> saved``: the SIGKILL-then-resume round of a training script whose
    ``on_epoch`` is :data:`CHILD_SIGNAL_SRC`'s ``kill_after_epoch(mode, ckpt_dir)`` and which ``torch.save``s a
    dict with ``resumed`` (the epoch it resumed from) and ``dahash`` (the package file it imported) to ``out``.

    Runs ``cmd + ["slow"]`` in ``ckpt_dir.parent`` until it signals after epoch 2's checkpoint and SIGKILLs it
    (:func:`kill_at_checkpoint`); asserts it wrote no ``out`` and left the checkpoints of epochs 1 and 2 only;
    reruns ``cmd + ["fast"]`` to completion; asserts that run imported this checkout and resumed from epoch 2;
    returns the loaded ``out``.
    """
    import subprocess

    import torch

    from dahash.train.checkpoint import list_checkpoints

    def resume(cmd: list[str], ckpt_dir: Path, out: Path) -> dict:
        cwd = ckpt_dir.parent
        assert kill_at_checkpoint([*cmd, "slow"], cwd / "ready.json", cwd)["epoch"] == 2
        assert not out.exists()
        assert [e for e, _ in list_checkpoints(ckpt_dir)] == [1, 2]  # killed after epoch 2, before epoch 3
        resumed = subprocess.run([*cmd, "fast"], capture_output=True, text=True, timeout=300, cwd=cwd,
                                 env=checkout_env())
        assert resumed.returncode == 0, resumed.stderr
        saved = torch.load(out, weights_only=True)
        assert_imports_checkout(saved["dahash"])
        assert saved["resumed"] == 2
        return saved

    return resume
