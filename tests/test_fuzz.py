"""Fuzz: corrupted images through preprocessing and malformed archives through extraction (issue 10, "Also").

Seeded (reproducible in CI; change FUZZ_SEED to explore): 240 images of every format and odd mode Pillow writes,
then truncated, byte-flipped, renamed to the wrong extension, emptied or replaced by garbage, go through
:func:`dahash.data.manifest.build_manifest`; 60 malformed zip/tar archives (truncated, flipped bytes, unsafe members,
encrypted or unknown-compression flags, not archives at all) go through :func:`dahash.data.download.safe_extract`.
Checked: no crash; every image is either ``ok`` AND decodes to the size the manifest says, or ``excluded`` with a
reason listed in the summary; every archive either extracts inside its destination only, or is refused with a
DownloadError naming it, leaving nothing behind.
"""

from __future__ import annotations

import io
import os
import stat
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dahash.data.datasets import DatasetSpec
from dahash.data.download import DownloadError, safe_extract
from dahash.data.images import load_rgb
from dahash.data.manifest import build_manifest, manifest_summary

FUZZ_SEED = int(os.environ.get("FUZZ_SEED", "20261201"))
N_IMAGES = 240
N_ARCHIVES = 60

# (format, mode, extension): every mode the images module has a rule for, in the formats that store it
BASES = [("JPEG", "RGB", ".jpg"), ("JPEG", "L", ".jpg"), ("JPEG", "CMYK", ".jpg"), ("PNG", "RGB", ".png"),
         ("PNG", "RGBA", ".png"), ("PNG", "P", ".png"), ("PNG", "L", ".png"), ("PNG", "LA", ".png"),
         ("PNG", "I;16", ".png"), ("PNG", "1", ".png"), ("GIF", "P", ".gif"), ("BMP", "RGB", ".bmp"),
         ("TIFF", "RGB", ".tif"), ("TIFF", "CMYK", ".tif"), ("TIFF", "I;16", ".tif"), ("TIFF", "F", ".tif"),
         ("TIFF", "LAB", ".tif"), ("TIFF", "YCbCr", ".tif"), ("TIFF", "I", ".tif"), ("WEBP", "RGB", ".webp"),
         ("WEBP", "RGBA", ".webp")]


def _base_image(fmt: str, mode: str, rng: np.random.Generator) -> bytes:
    w, h = int(rng.integers(5, 40)), int(rng.integers(5, 40))
    rgb = Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8), "RGB")
    if mode == "I;16":
        img = Image.fromarray(rng.integers(0, 65536, (h, w), dtype=np.uint16))
    elif mode in ("I", "F"):
        img = Image.fromarray(rng.integers(0, 65536, (h, w)).astype(np.int32 if mode == "I" else np.float32), mode)
    else:
        img = rgb.convert(mode)
    buf = io.BytesIO()
    kw = {}
    if fmt == "JPEG" and rng.random() < 0.5:  # sometimes an EXIF orientation, valid or not
        exif = Image.Exif()
        exif[0x0112] = int(rng.choice([1, 3, 6, 8, 0, 9, 255]))
        kw["exif"] = exif
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


def _corrupt(data: bytes, rng: np.random.Generator) -> tuple[bytes, str]:
    """A random corruption of ``data``: (bytes, what was done)."""
    kind = rng.choice(["intact", "truncate", "flip", "flip_header", "garbage", "empty", "zero_tail", "splice"])
    b = bytearray(data)
    if kind == "truncate":
        b = b[: int(rng.integers(0, len(b)))]
    elif kind in ("flip", "flip_header"):
        span = min(len(b), 64) if kind == "flip_header" else len(b)
        for i in rng.integers(0, span, size=int(rng.integers(1, 9))):
            b[i] ^= int(rng.integers(1, 256))
    elif kind == "garbage":
        b = bytearray(rng.integers(0, 256, int(rng.integers(1, 2000)), dtype=np.uint8).tobytes())
    elif kind == "empty":
        b = bytearray()
    elif kind == "zero_tail":
        cut = int(rng.integers(len(b) // 2, len(b)))
        b[cut:] = bytes(len(b) - cut)
    elif kind == "splice":  # a valid header with someone else's body
        b = b[:32] + bytearray(rng.integers(0, 256, len(b), dtype=np.uint8).tobytes())
    return bytes(b), str(kind)


def test_fuzzed_images_never_crash_preprocessing(tmp_path: Path) -> None:
    rng = np.random.default_rng(FUZZ_SEED)
    classes = ("a", "b", "c")
    made: dict[str, str] = {}
    for i in range(N_IMAGES):
        fmt, mode, ext = BASES[i % len(BASES)]
        data, kind = _corrupt(_base_image(fmt, mode, rng), rng)
        if rng.random() < 0.2:  # the wrong extension
            ext = str(rng.choice([".jpg", ".png", ".gif", ".txt", ""]))
        rel = f"dom/{classes[i % 3]}/img_{i:03d}_{fmt}_{mode.replace(';', '')}_{kind}{ext}"
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(data)
        made[rel] = kind
    spec = DatasetSpec(name="fuzz", domains=("dom",), classes=classes, archive=None, domain_dirs={"dom": "dom"},
                       homepage="", citation="", tree_sha256=None)

    df = build_manifest(tmp_path, spec)  # must not raise

    assert sorted(df["path"]) == sorted(made)
    assert set(df["status"]) <= {"ok", "excluded"}
    excluded = df[df["status"] == "excluded"]
    assert (excluded["reason"].str.len() > 0).all()
    summary = manifest_summary(df)
    assert sorted(e["path"] for e in summary["excluded_files"]) == sorted(excluded["path"])
    ok = df[df["status"] == "ok"]
    for row in ok.itertuples():
        img = load_rgb(tmp_path / row.path)  # "ok" means it decodes, to the size recorded
        assert img.mode == "RGB" and img.size == (row.width, row.height), row.path
    # the fuzz is not vacuous: both outcomes occur, and every intact image except mode F is usable
    assert len(ok) > 20 and len(excluded) > 50
    intact = df[[made[p] == "intact" for p in df["path"]]]
    bad_intact = intact[(intact["status"] != "ok") & ~intact["path"].str.contains("_F_")]
    assert bad_intact.empty, bad_intact[["path", "reason"]].to_string()


# ------------------------------------------------------------------------------------------ archives
def _png(rng: np.random.Generator) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (6, 5, 3), dtype=np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def _zip(members: list[tuple[str, bytes, int | None]]) -> bytes:
    """A zip of (name, data, unix mode or None)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data, mode in members:
            info = zipfile.ZipInfo(name)
            info.compress_type = zipfile.ZIP_DEFLATED
            if mode is not None:
                info.create_system = 3
                info.external_attr = mode << 16
            zf.writestr(info, data)
    return buf.getvalue()


def _tar(members: list[tarfile.TarInfo | tuple[str, bytes]], compression: str = "gz") -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode=f"w:{compression}") as tf:
        for m in members:
            if isinstance(m, tarfile.TarInfo):
                tf.addfile(m)
            else:
                info = tarfile.TarInfo(m[0])
                info.size = len(m[1])
                tf.addfile(info, io.BytesIO(m[1]))
    return buf.getvalue()


def _link(name: str, target: str, kind: bytes) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, target
    return info


def _malformed_archives(rng: np.random.Generator) -> list[tuple[str, bytes]]:
    good = [(f"set/dom/c{i % 2}/img{i}.png", _png(rng)) for i in range(4)]
    valid_zip = _zip([(n, d, None) for n, d in good])
    valid_tgz = _tar(good)
    fifo = tarfile.TarInfo("set/dom/c0/fifo")
    fifo.type = tarfile.FIFOTYPE
    dev = tarfile.TarInfo("set/dom/c0/dev")
    dev.type = tarfile.CHRTYPE
    unsafe = [
        ("dotdot.zip", _zip([*[(n, d, None) for n, d in good], ("set/../../evil.png", b"x", None)])),
        ("absolute.zip", _zip([("/tmp/evil.png", b"x", None)])),
        ("backslash.zip", _zip([("..\\..\\evil.png", b"x", None)])),
        ("zip_symlink.zip", _zip([("set/dom/c0/l.png", b"/etc/passwd", stat.S_IFLNK | 0o777)])),
        ("zip_fifo.zip", _zip([("set/dom/c0/f", b"", stat.S_IFIFO | 0o644)])),
        ("nul.zip", _zip([("set/dom/c0/a\x00b.png", b"x", None)])),
        ("tar_symlink.tgz", _tar([*good, _link("set/dom/c0/l.png", "/etc/passwd", tarfile.SYMTYPE)])),
        ("tar_symlink_up.tgz", _tar([_link("set/dom/c0/l.png", "../../../../x", tarfile.SYMTYPE)])),
        ("tar_hardlink.tgz", _tar([_link("set/dom/c0/h.png", "/etc/passwd", tarfile.LNKTYPE)])),
        ("tar_fifo.tgz", _tar([fifo])),
        ("tar_dev.tgz", _tar([dev])),
        ("tar_dotdot.tar", _tar([("../evil.png", b"x")], compression="")),
        ("tar_abs.tar.bz2", _tar([("/evil.png", b"x")], compression="bz2")),
        ("html.zip", b"<!DOCTYPE html><html><body>Access denied</body></html>"),
        ("empty.tar.gz", b""),
        ("tar_named.zip", valid_tgz),
    ]
    encrypted = bytearray(valid_zip)  # the "encrypted" flag set in every local and central header
    for sig, off in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):
        start = 0
        while (i := encrypted.find(sig, start)) >= 0:
            encrypted[i + off] |= 1
            start = i + 4
    unknown_method = bytearray(valid_zip)  # compression method 99 (AES / unknown)
    for sig, off in ((b"PK\x03\x04", 8), (b"PK\x01\x02", 10)):
        start = 0
        while (i := unknown_method.find(sig, start)) >= 0:
            unknown_method[i + off : i + off + 2] = (99).to_bytes(2, "little")
            start = i + 4
    out = [*unsafe, ("encrypted.zip", bytes(encrypted)), ("method99.zip", bytes(unknown_method))]
    while len(out) < N_ARCHIVES:
        base, ext = [(valid_zip, ".zip"), (valid_tgz, ".tar.gz"), (_tar(good, "xz"), ".tar.xz"),
                     (_tar(good, ""), ".tar")][len(out) % 4]
        b = bytearray(base)
        kind = rng.choice(["truncate", "flip", "flip_many"])
        if kind == "truncate":
            b = b[: int(rng.integers(1, len(b)))]
        else:
            for i in rng.integers(0, len(b), size=1 if kind == "flip" else int(rng.integers(2, 40))):
                b[i] ^= int(rng.integers(1, 256))
        out.append((f"fuzz{len(out):02d}_{kind}{ext}", bytes(b)))
    return out


def test_malformed_archives_never_crash_extraction(tmp_path: Path) -> None:
    rng = np.random.default_rng(FUZZ_SEED)
    archives = _malformed_archives(rng)
    assert len(archives) >= 50
    outcomes: dict[str, int] = {"extracted": 0, "refused": 0}
    for name, data in archives:
        src = tmp_path / "in" / name
        src.parent.mkdir(exist_ok=True)
        src.write_bytes(data)
        work = tmp_path / "out" / name
        work.mkdir(parents=True)
        dest = work / "x"
        try:
            safe_extract(src, dest)
        except DownloadError as exc:
            outcomes["refused"] += 1
            assert str(src) in str(exc), f"{name}: the error does not name the archive: {exc}"
            assert list(work.iterdir()) == [], f"{name}: left {list(work.iterdir())}"
            continue
        outcomes["extracted"] += 1
        real = dest.resolve()
        for p in dest.rglob("*"):  # everything extracted stays inside the destination
            assert p.resolve().is_relative_to(real), f"{name}: {p} escapes"
            assert not (p.is_symlink() and not p.resolve().is_relative_to(real))
        assert sorted(q.name for q in work.iterdir()) == ["x"]
    assert not (tmp_path / "evil.png").exists() and not (tmp_path / "out" / "evil.png").exists()
    assert outcomes["refused"] >= 18 and outcomes["extracted"] >= 1, outcomes


@pytest.mark.parametrize("name", ["dotdot.zip", "zip_symlink.zip", "tar_hardlink.tgz", "encrypted.zip",
                                  "method99.zip", "tar_fifo.tgz"])
def test_each_unsafe_or_unreadable_archive_is_refused(tmp_path: Path, name: str) -> None:
    data = dict(_malformed_archives(np.random.default_rng(FUZZ_SEED)))[name]
    src = tmp_path / name
    src.write_bytes(data)
    with pytest.raises(DownloadError, match=str(src).replace("\\", "\\\\").replace(".", r"\.")):
        safe_extract(src, tmp_path / "out")
    assert sorted(p.name for p in tmp_path.iterdir()) == [name]


# ---- tampered search indexes (issue 23 point 11): one ERROR line each, never a traceback or a silent cast ----

def _index_table(bits: int = 64, n: int = 5):
    """A valid index table of n random ``bits``-bit codes and its metadata dict."""
    import json

    import pyarrow.parquet as pq

    from dahash.codes.index import Index

    import tempfile

    rng = np.random.default_rng(n)
    index = Index.from_bits(rng.integers(0, 2, (n, bits)), [f"i{j}.jpg" for j in range(n)])
    with tempfile.TemporaryDirectory() as tmp:
        table = pq.read_table(index.to_parquet(Path(tmp) / "t.parquet"))
    return table, json.loads(table.schema.metadata[b"dahash"]), pq


def _with_meta(table, meta):
    import json

    return table.replace_schema_metadata({"dahash": meta if isinstance(meta, (str, bytes)) else json.dumps(meta)})


def _with_code(table, column):
    return table.set_column(table.column_names.index("code"), "code", column)


def _tampered_tables() -> dict:
    import pyarrow as pa

    table, meta, _ = _index_table()
    codes = np.asarray(table.column("code").combine_chunks().flatten().to_numpy(), dtype=np.uint64)
    out = {f"bits={b!r}": _with_meta(table, {**meta, "bits": b}) for b in (128, 0, -5, 2**40, "64", True, 64.5)}
    out["bits missing"] = _with_meta(table, {k: v for k, v in meta.items() if k != "bits"})
    out["metadata not JSON"] = _with_meta(table, "{not json")
    out["metadata a JSON list"] = _with_meta(table, "[64]")
    out["code column of strings"] = _with_code(table, pa.array([str(c) for c in codes]))
    out["two words per code, bits 64"] = _with_code(
        table, pa.FixedSizeListArray.from_arrays(pa.array(np.repeat(codes, 2), pa.uint64()), 2))
    out["list<double> code column"] = _with_code(
        table, pa.array([[float(c)] for c in codes], pa.list_(pa.float64())))
    out["list<int8> code column"] = _with_code(table, pa.array([[1]] * len(codes), pa.list_(pa.int8())))
    out["fixed_size_list<int64> code column"] = _with_code(
        table, pa.FixedSizeListArray.from_arrays(pa.array(codes.astype(np.int64)), 1))
    out["null code"] = _with_code(table, pa.FixedSizeListArray.from_arrays(
        pa.array([None] + codes[1:].tolist(), pa.uint64()), 1))
    out["codes changed behind the digest"] = _with_code(
        table, pa.FixedSizeListArray.from_arrays(pa.array(codes ^ np.uint64(1)), 1))
    out["path column of integers"] = table.set_column(0, "path", pa.array(range(len(codes)), pa.int64()))
    return out


def _search_fails_with_one_line(index: Path, query: Path, capsys, *extra: str) -> str:
    from dahash.cli import main

    with pytest.raises(SystemExit) as exc:
        main(["search", str(index), str(query), *extra])
    err = capsys.readouterr().err
    assert exc.value.code == 1 and err.startswith("ERROR: ") and err.count("\n") == 1, err
    assert str(index.name) in err or index.name.split(".")[0] in err
    return err


TAMPERED = sorted(_tampered_tables())


@pytest.mark.parametrize("case", TAMPERED)
@pytest.mark.parametrize("mmap", [False, True])
def test_tampered_index_is_refused_in_one_line(tmp_path: Path, capsys, case: str, mmap: bool) -> None:
    import pyarrow.parquet as pq

    table = _tampered_tables()[case]
    bad = tmp_path / "bad.parquet"
    pq.write_table(table, bad)
    query, _, _ = _index_table()
    pq.write_table(query, tmp_path / "q.parquet")
    _search_fails_with_one_line(bad, tmp_path / "q.parquet", capsys, *(["--mmap"] if mmap else []))


def test_tampered_sidecar_is_refused_or_ignored(tmp_path: Path, capsys) -> None:
    """The mtime-named sidecar of earlier versions is never read (objects in it used to give a traceback); the
    digest-named one holding objects, or a header claiming a huge shape, is refused in one line."""
    import pyarrow.parquet as pq

    from dahash.cli import main
    from dahash.codes.index import Index
    from dahash.codes.store import sidecar_path

    table, _, _ = _index_table()
    p = tmp_path / "a.parquet"
    pq.write_table(table, p)
    pq.write_table(table, tmp_path / "q.parquet")
    np.save(tmp_path / "a.parquet.codes.npy", np.array([object()] * 5), allow_pickle=True)
    main(["search", str(p), str(tmp_path / "q.parquet"), "--mmap", "-k", "1", "--format", "json"])
    assert '"distance": 0' in capsys.readouterr().out
    side = sidecar_path(p, Index.from_parquet(p).digest)
    assert side.is_file() and not (tmp_path / "a.parquet.codes.npy").exists()
    np.save(side, np.array([object()] * 5), allow_pickle=True)
    assert "sidecar" in _search_fails_with_one_line(p, tmp_path / "q.parquet", capsys, "--mmap")
    from numpy.lib import format as npf

    with open(side, "wb") as fh:  # a header claiming 10^12 x 1 uint64 words over a 128-byte file
        npf.write_array_header_1_0(fh, {"descr": "<u8", "fortran_order": False, "shape": (10**12, 1)})
    assert "sidecar" in _search_fails_with_one_line(p, tmp_path / "q.parquet", capsys, "--mmap")
