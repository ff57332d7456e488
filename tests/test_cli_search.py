"""`dahash export / encode / search` end to end on a toy run folder (subprocesses import this checkout)."""

from __future__ import annotations

import json
import os
import subprocess
import tomllib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from dahash.codes.export import Encoder, derive_export
from dahash.codes.index import Index, _popcount
from dahash.eval.metrics import binarize, hamming_distance
from tests.toy_run import dahash_cli, head_run, labelled_images

REPO = Path(__file__).resolve().parents[1]


def _dahash(*args: str, ok: bool = True) -> subprocess.CompletedProcess:
    return dahash_cli(*args, ok=ok)


@pytest.fixture(scope="module")
def toy(tmp_path_factory) -> dict:
    """A head-mode EfficientNet-Lite0 run folder (random 16-bit head) and a folder of labelled images."""
    tmp = tmp_path_factory.mktemp("cli")
    run = head_run(tmp)
    images = labelled_images(tmp / "images")
    (images / "blue" / "broken.jpg").write_bytes(b"\xff\xd8 truncated")
    (images / "notes.txt").write_text("not an image")
    return {"tmp": tmp, "run": run, "images": images}


def test_console_script_registered() -> None:
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    module, func = scripts["dahash"].split(":")
    assert module == "dahash.cli" and callable(getattr(__import__(module, fromlist=[func]), func))


def test_encode_then_search(toy: dict) -> None:
    tmp, run, images = toy["tmp"], toy["run"], toy["images"]
    export = tmp / "model.pt"
    _dahash("export", str(run), "-o", str(export))
    out = tmp / "index.parquet"
    proc = _dahash("encode", str(export), str(images), "-o", str(out), "-q")
    assert "skipped: " in proc.stderr and "broken.jpg" in proc.stderr and "1 non-image file" in proc.stderr
    index = Index.from_parquet(out)
    assert index.paths == [f"blue/{i}.jpg" for i in range(3)] + [f"red/{i}.jpg" for i in range(3)]
    assert index.labels == ["blue"] * 3 + ["red"] * 3
    assert [s[0] for s in index.meta["skipped"]] == ["blue/broken.jpg"]
    # the stored codes are 1[u > 0] of the library encoder's outputs
    u = Encoder(derive_export(run)).encode([images / p for p in index.paths]).u
    np.testing.assert_array_equal(Index.from_u(u).codes, index.codes)

    # an image as query: JSON rows in the stable Hamming ranking (brute-force reference)
    q = images / "red" / "1.jpg"
    rows = json.loads(_dahash("search", str(out), str(q), "-k", "4", "--format", "json").stdout)
    dist = hamming_distance(binarize(u[4:5]), binarize(u))[0]
    want = np.argsort(dist, kind="stable")[:4]
    assert [r["path"] for r in rows] == [index.paths[j] for j in want]
    assert [r["distance"] for r in rows] == dist[want].tolist() and rows[0]["distance"] == 0

    # an index as query (batch), CSV, and a radius search as a table
    csv = tmp / "res.csv"
    _dahash("search", str(out), str(out), "-k", "2", "--format", "csv", "-o", str(csv))
    df = pd.read_csv(csv)
    assert len(df) == 12 and list(df.columns) == ["query", "query_label", "rank", "path", "label", "distance", "order"]
    assert set(df["order"]) == {"hamming distance, then database position"}
    full = hamming_distance(binarize(u), binarize(u))
    top = np.argsort(full, axis=1, kind="stable")[:, :2]
    assert df["path"].tolist() == [index.paths[j] for j in top.ravel()]
    table = _dahash("search", str(out), str(q), "--radius", "0", "--mmap").stdout
    assert "red/1.jpg" in table and "distance" in table


def test_errors_are_one_line(toy: dict) -> None:
    tmp = toy["tmp"]
    proc = _dahash("search", str(tmp / "missing.parquet"), str(tmp), ok=False)
    assert proc.stderr.startswith("ERROR:") and "missing.parquet" in proc.stderr and "Traceback" not in proc.stderr
    bad = tmp / "old.pt"
    torch.save({"format": "dahash-model-export", "version": 0}, bad)
    proc = _dahash("encode", str(bad), str(toy["images"]), "-o", str(tmp / "x.parquet"), ok=False)
    assert "version 0" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp / "x.parquet").exists()


def test_popcount_fallback_equals_bitwise_count(monkeypatch) -> None:
    """Without np.bitwise_count (numpy < 2) the byte-table popcount gives bin(x).count("1")."""
    x = np.random.default_rng(0).integers(0, 2**63, (5, 3), dtype=np.int64).astype(np.uint64) * np.uint64(3)
    want = np.vectorize(lambda v: bin(int(v)).count("1"))(x)
    np.testing.assert_array_equal(_popcount(x), want)
    monkeypatch.delattr(np, "bitwise_count")
    np.testing.assert_array_equal(_popcount(x), want)


def test_html_page(toy: dict) -> None:
    """`search --html`: per query its thumbnail and k answers, frames green/red by label, thumbnails embedded."""
    import base64
    import io
    from html.parser import HTMLParser

    tmp, images = toy["tmp"], toy["images"]
    out = tmp / "h.parquet"
    _dahash("encode", str(toy["run"]), str(images), "-o", str(out), "-q")
    page = tmp / "page.html"
    rows = json.loads(_dahash("search", str(out), str(out), "-k", "3", "--format", "json", "--html", str(page)).stdout)

    class Figures(HTMLParser):
        def __init__(self) -> None:
            super().__init__()
            self.classes: list[str] = []
            self.srcs: list[str] = []

        def handle_starttag(self, tag: str, attrs: list) -> None:
            a = dict(attrs)
            if tag == "figure":
                self.classes.append(a["class"])
            elif tag == "img":
                self.srcs.append(a["src"])

    parser = Figures()
    parser.feed(page.read_text())
    want = []
    for i in range(6):
        want.append("query")
        want += ["hit" if r["label"] == r["query_label"] else "miss" for r in rows[3 * i:3 * i + 3]]
    assert parser.classes == want
    assert all(s.startswith("data:image/jpeg;base64,") for s in parser.srcs) and len(parser.srcs) == 24
    thumb = Image.open(io.BytesIO(base64.b64decode(parser.srcs[0].split(",", 1)[1])))
    assert max(thumb.size) <= 96


def _copy_images(toy: dict, dest: Path) -> Path:
    import shutil

    return Path(shutil.copytree(toy["images"], dest))


def test_non_utf8_file_name_is_skipped_with_a_line(toy: dict, tmp_path: Path) -> None:
    """Issue 23 point 7: a file name that is not UTF-8 (legal on Linux) used to make `dahash encode` decode every
    image, then die in to_parquet with UnicodeEncodeError; now it is skipped, saying so, and the index written."""
    images = _copy_images(toy, tmp_path / "images")
    good = images / "red" / "0.jpg"
    try:
        bad = images / "red" / os.fsdecode(b"caf\xe9.jpg")  # latin-1 bytes: not UTF-8
        bad.write_bytes(good.read_bytes())
    except (OSError, UnicodeError) as exc:  # a file system that only takes UTF-8 names
        pytest.skip(f"this file system refuses a non-UTF-8 name: {exc}")
    out = tmp_path / "i.parquet"
    proc = _dahash("encode", str(toy["run"]), str(images), "-o", str(out), "-q")
    assert "caf\\xe9.jpg: file name is not UTF-8" in proc.stderr and "Traceback" not in proc.stderr
    index = Index.from_parquet(out)
    assert len(index) == 6 and "red/0.jpg" in index.paths
    assert ["red/caf\\xe9.jpg", "file name is not UTF-8 text (an index stores UTF-8 paths); rename it"] in \
        index.meta["skipped"]


def test_pickled_export_refused_in_one_line(toy: dict, tmp_path: Path) -> None:
    """Issue 23 point 14: an export file holding Python objects: one ERROR line naming the file, without torch's
    advice to load it with weights_only=False."""
    evil = tmp_path / "evil.pt"
    torch.save({"format": "dahash-model-export", "version": 1, "payload": Path("x")}, evil)
    proc = _dahash("encode", str(evil), str(toy["images"]), "-o", str(tmp_path / "x.parquet"), ok=False)
    assert proc.stderr.startswith(f"ERROR: {evil}: refused") and proc.stderr.count("\n") == 1, proc.stderr
    assert "weights_only" not in proc.stderr.replace("weights_only=True", "") and "PosixPath" in proc.stderr


def _png_bomb() -> bytes:
    """A PNG header claiming 30000 x 30000 RGB pixels (Pillow refuses it as a decompression bomb on open)."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 30000, 30000, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\x00" * 16)) + chunk(b"IEND", b""))


def test_html_page_with_a_decompression_bomb(toy: dict, tmp_path: Path) -> None:
    """Issue 23 point 14: an indexed image that became a decompression bomb: the page is still written, that
    thumbnail replaced by a note."""
    images = _copy_images(toy, tmp_path / "images")
    out = tmp_path / "i.parquet"
    _dahash("encode", str(toy["run"]), str(images), "-o", str(out), "-q")
    (images / "red" / "0.jpg").write_bytes(_png_bomb())
    page = tmp_path / "page.html"
    proc = _dahash("search", str(out), str(out), "-k", "6", "--html", str(page))
    text = page.read_text()
    assert "HTML page -> " in proc.stderr and text.count("thumbnail not shown: DecompressionBombError") == 7
    assert text.count("data:image/jpeg;base64,") == 6 * 7 - 7


def test_a_folder_1100_levels_deep_is_walked(tmp_path: Path) -> None:
    """Issue 23 point 14: `dahash encode` on a 1,100-level nested folder used to die with RecursionError
    (Path.rglob); the image at the bottom is found, links to folders are not followed."""
    from dahash.cli import _image_files

    deep = tmp_path / "root"
    d = deep
    d.mkdir()
    old = os.getcwd()
    try:  # one level at a time, relative: the absolute path is longer than some calls accept
        os.chdir(d)
        for _ in range(1100):
            os.mkdir("a")
            os.chdir("a")
        Image.new("RGB", (8, 8)).save("bottom.png")
        open("notes.txt", "w").close()
    finally:
        os.chdir(old)
    (deep / "loop").symlink_to(deep)
    try:
        images, ignored = _image_files(deep)
        assert [p.name for p in images] == ["bottom.png"] and len(images[0].relative_to(deep).parts) == 1101
        assert ignored == 1
    finally:  # pytest's own clean-up (shutil.rmtree) recurses and would fail on this tree: GNU rm does not
        subprocess.run(["rm", "-rf", str(deep)], check=True)
