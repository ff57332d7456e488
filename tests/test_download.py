from __future__ import annotations

import hashlib
import io
import json
import os
import stat
import tarfile
import zipfile
from pathlib import Path

import pytest

from dahash.data.datasets import DatasetSpec, RemoteFile, folder_dataset
from dahash.data.download import (
    DownloadError,
    fetch,
    fetch_weights,
    prepare_dataset,
    safe_extract,
    tree_digest,
    tree_files,
)
from dahash.data.manifest import build_manifest, manifest_summary

DOMAINS = ("d1", "d2")
CLASSES = ("alpha", "beta", "gamma")


# ---------------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------------
def files_under(p: Path) -> list[str]:
    """All files and links (not folders) below ``p``, relative, sorted."""
    if not p.exists():
        return []
    return sorted(str(f.relative_to(p)) for f in p.rglob("*") if not f.is_dir() or f.is_symlink())


def entries(p: Path) -> list[str]:
    return sorted(x.name for x in p.iterdir()) if p.exists() else []


def zip_bytes(tree: Path, prefix: str, extra: dict[str, bytes] | None = None) -> bytes:
    """A zip of ``tree/<domain>/<class>/<file>`` stored as ``<prefix><domain>/<class>/<file>``."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for rel in tree_files(tree, DOMAINS):
            zf.write(tree / rel, prefix + rel)
        for name, data in (extra or {}).items():
            zf.writestr(name, data)
    return buf.getvalue()


def targz_bytes(tree: Path) -> bytes:
    """Office-31 layout: ``<domain>/images/<class>/<file>``, no wrapper folder."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        for rel in tree_files(tree, DOMAINS):
            d, c, f = rel.split("/")
            tf.add(tree / rel, arcname=f"{d}/images/{c}/{f}")
    return buf.getvalue()


def make_spec(url: str, filename: str, *, known_hash: str | None, tree_sha256: str | None,
              layout: str = "zip") -> DatasetSpec:
    dirs = {d: f"images/{d}" for d in DOMAINS} if layout == "zip" else {d: f"{d}/images" for d in DOMAINS}
    return DatasetSpec(
        name="tiny",
        domains=DOMAINS,
        classes=CLASSES,
        archive=RemoteFile(url=url, filename=filename, known_hash=known_hash, size=None, note="test archive"),
        domain_dirs=dirs,
        homepage="http://example.invalid",
        citation="none",
        tree_sha256=tree_sha256,
    )


@pytest.fixture
def tiny(tmp_path, make_image_tree):
    """A source tree, its digest, and the work folders (cache, manual, data)."""
    src = tmp_path / "src"
    rels = make_image_tree(src, DOMAINS, CLASSES, n_per_class=2)
    work = tmp_path / "work"
    dirs = {"cache": work / "cache", "manual": work / "manual", "data": work / "data"}
    dirs["manual"].mkdir(parents=True)
    return {"src": src, "rels": rels, "digest": tree_digest(src, DOMAINS), **dirs}


def sha(b: bytes) -> str:
    return hashlib.sha256(b).hexdigest()


def digest(alg: str, b: bytes) -> str:
    return hashlib.new(alg, b).hexdigest()


# ---------------------------------------------------------------------------------------------
# good archives from the local server
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["zip", "tar.gz"])
def test_prepare_from_server(kind, tiny, http_server):
    if kind == "zip":  # GitHub-like: wrapper folder, extra non-image folder, no byte checksum
        body = zip_bytes(tiny["src"], "Tiny-abc123/images/", {"Tiny-abc123/features/x.txt": b"f"})
        filename, archive_sha = "tiny.zip", None
    else:  # Office-31-like, with a byte checksum
        body = targz_bytes(tiny["src"])
        filename, archive_sha = "tiny.tar.gz", "sha256:" + sha(body)
    url = http_server.add(filename, body)
    spec = make_spec(url, filename, known_hash=archive_sha, tree_sha256=tiny["digest"],
                     layout="zip" if kind == "zip" else "tar")
    out = tiny["data"] / "tiny"

    got = prepare_dataset(spec, out, cache_dir=tiny["cache"], manual_dir=tiny["manual"], progress=False)

    assert got == out
    assert tree_files(out, DOMAINS) == tiny["rels"]
    for rel in tiny["rels"]:
        assert (out / rel).read_bytes() == (tiny["src"] / rel).read_bytes()
    assert sorted(entries(out)) == ["SOURCE.json", "d1", "d2"]
    src_info = json.loads((out / "SOURCE.json").read_text())
    assert src_info["kind"] == "download"
    assert src_info["url"] == url
    assert src_info["archive_sha256"] == sha(body)
    assert src_info["tree_sha256"] == tiny["digest"] and src_info["tree_sha256_verified"]
    assert src_info["counts"] == {"d1": 6, "d2": 6}
    assert files_under(tiny["cache"]) == [filename]  # only the finished archive
    assert entries(tiny["data"]) == ["tiny"]  # no temporary folders left

    df = build_manifest(out, spec)
    assert len(df) == 12 and (df["status"] == "ok").all()
    assert manifest_summary(df)["by_domain"] == {d: {"ok": 6, "excluded": 0, "total": 6} for d in DOMAINS}

    # a second run reuses the cached archive
    prepare_dataset(spec, out, cache_dir=tiny["cache"], manual_dir=tiny["manual"], progress=False)
    assert http_server.hits["/" + filename] == 1


def test_fetch_redownloads_cached_file_failing_checksum(tiny, http_server):
    body = b"payload" * 100
    url = http_server.add("f.bin", body)
    remote = RemoteFile(url, "f.bin", "sha256:" + sha(body), len(body), "")
    tiny["cache"].mkdir(parents=True)
    (tiny["cache"] / "f.bin").write_bytes(b"stale")
    path = fetch(remote, tiny["cache"], progress=False)
    assert path.read_bytes() == body
    assert http_server.hits["/f.bin"] == 1
    fetch(remote, tiny["cache"], progress=False)
    assert http_server.hits["/f.bin"] == 1


@pytest.mark.parametrize("alg", ["md5", "sha1"])
def test_fetch_published_md5_sha1(alg, tiny, http_server):
    body = b"published archive " * 50
    url = http_server.add("f.bin", body)
    good = RemoteFile(url, "f.bin", f"{alg}:{digest(alg, body)}", None, "")
    path = fetch(good, tiny["cache"], progress=False)
    assert path == tiny["cache"] / "f.bin" and path.read_bytes() == body
    fetch(good, tiny["cache"], progress=False)  # the cached copy is verified with the same alg
    assert http_server.hits["/f.bin"] == 1

    wrong_hex = digest(alg, b"something else")
    wrong = RemoteFile(url, "f.bin", f"{alg}:{wrong_hex}", None, "")
    cache2 = tiny["cache"].parent / "cache2"
    with pytest.raises(DownloadError) as ei:
        fetch(wrong, cache2, manual_dir=tiny["manual"], progress=False)
    msg = str(ei.value)
    assert f"failed its {alg} checksum" in msg and f"{alg} {wrong_hex}" in msg
    assert "Nothing was written" in msg and str(tiny["manual"] / "f.bin") in msg
    assert files_under(cache2) == []


@pytest.mark.parametrize("alg", ["md5", "sha1"])
def test_manual_and_cached_copies_checked_with_published_alg(alg, tiny, closed_port_url):
    body = b"hand-placed file"
    (tiny["manual"] / "f.bin").write_bytes(body)
    good = RemoteFile(closed_port_url, "f.bin", f"{alg}:{digest(alg, body)}", None, "")
    assert fetch(good, tiny["cache"], manual_dir=tiny["manual"], progress=False) == tiny["manual"] / "f.bin"

    wrong_hex = "0" * len(digest(alg, body))
    wrong = RemoteFile(closed_port_url, "f.bin", f"{alg}:{wrong_hex}", None, "")
    with pytest.raises(DownloadError) as ei:
        fetch(wrong, tiny["cache"], manual_dir=tiny["manual"], progress=False)
    msg = str(ei.value)
    assert f"has {alg} {digest(alg, body)}" in msg and f"must have {alg} {wrong_hex}" in msg
    assert (tiny["manual"] / "f.bin").read_bytes() == body
    assert files_under(tiny["cache"]) == []

    tiny["cache"].mkdir(parents=True)
    (tiny["cache"] / "f.bin").write_bytes(body)  # a cached copy: reused without any network
    assert fetch(good, tiny["cache"], progress=False).read_bytes() == body


# ---------------------------------------------------------------------------------------------
# offline mode: no network access at all
# ---------------------------------------------------------------------------------------------
@pytest.fixture
def no_network(monkeypatch):
    """Fail the test if anything tries to download."""

    def refuse(*args, **kwargs):
        raise AssertionError("offline mode must not download")

    monkeypatch.setattr("dahash.data.fetch.pooch.retrieve", refuse)


def test_offline_fetch_without_local_copy(tiny, no_network):
    url = "https://example.invalid/tiny.zip"
    remote = RemoteFile(url, "tiny.zip", "md5:" + "c" * 32, None, "a note")
    with pytest.raises(DownloadError) as ei:
        fetch(remote, tiny["cache"], manual_dir=tiny["manual"], progress=False, offline=True)
    msg = str(ei.value)
    assert "offline mode" in msg and "'tiny.zip'" in msg and url in msg
    assert str(tiny["manual"] / "tiny.zip") in msg and "md5 " + "c" * 32 in msg
    assert "by hand" in msg and "Nothing was written" in msg
    assert not tiny["cache"].exists()

    unverified = RemoteFile(url, "tiny.zip", None, None, "")
    with pytest.raises(DownloadError, match="offline mode") as ei:
        fetch(unverified, tiny["cache"], progress=False, offline=True)
    assert "no published checksum" in str(ei.value) and "manual_dir" in str(ei.value)
    assert not tiny["cache"].exists()


def test_offline_uses_manual_and_cached_copies(tiny, no_network):
    body = b"local copy"
    remote = RemoteFile("https://example.invalid/f.bin", "f.bin", "sha1:" + digest("sha1", body), None, "")
    (tiny["manual"] / "f.bin").write_bytes(body)
    got = fetch(remote, tiny["cache"], manual_dir=tiny["manual"], progress=False, offline=True)
    assert got == tiny["manual"] / "f.bin"
    (tiny["manual"] / "f.bin").unlink()
    tiny["cache"].mkdir(parents=True)
    (tiny["cache"] / "f.bin").write_bytes(body)
    assert fetch(remote, tiny["cache"], manual_dir=tiny["manual"], progress=False, offline=True) == tiny["cache"] / "f.bin"

    (tiny["cache"] / "f.bin").write_bytes(b"stale")  # fails its checksum: not replaced offline
    with pytest.raises(DownloadError, match=r"offline mode.*fails its sha1 checksum"):
        fetch(remote, tiny["cache"], manual_dir=tiny["manual"], progress=False, offline=True)
    assert (tiny["cache"] / "f.bin").read_bytes() == b"stale"


def test_offline_prepare_dataset_and_weights(tiny, tmp_path, no_network):
    spec = make_spec("https://example.invalid/tiny.zip", "tiny.zip", known_hash=None, tree_sha256=None)
    with pytest.raises(DownloadError) as ei:
        prepare_dataset(spec, tiny["data"] / "tiny", cache_dir=tiny["cache"],
                        manual_dir=tiny["manual"], progress=False, offline=True)
    msg = str(ei.value)
    assert "offline mode" in msg and str(tiny["manual"] / "tiny.zip") in msg
    assert "no published checksum" in msg and "https://example.invalid/tiny.zip" in msg
    assert_nothing_written(tiny)

    # a mirror needs no network, offline or not
    spec = make_spec("https://example.invalid/tiny.zip", "tiny.zip", known_hash=None,
                     tree_sha256=tiny["digest"])
    out = prepare_dataset(spec, tiny["data"] / "tiny", mirror=tiny["src"], cache_dir=tiny["cache"],
                          progress=False, offline=True)
    assert tree_files(out, DOMAINS) == tiny["rels"]

    dest = tmp_path / "models"
    with pytest.raises(DownloadError) as ei:
        fetch_weights("vggf", dest, manual_dir=tiny["manual"], progress=False, offline=True)
    assert "offline mode" in str(ei.value) and "imagenet-vgg-f.mat" in str(ei.value)
    assert str(tiny["manual"] / "imagenet-vgg-f.mat") in str(ei.value)
    assert files_under(dest) == []


# ---------------------------------------------------------------------------------------------
# a user's own folders
# ---------------------------------------------------------------------------------------------
def test_prepare_custom_folders(tmp_path, make_image_tree):
    root = tmp_path / "my images"
    rels = make_image_tree(root, ["day", "night"], ["car", "person"], n_per_class=2)
    (root / "day" / "car" / ".DS_Store").write_bytes(b"hidden")
    spec = folder_dataset(root, ["day", "night"])
    data = tmp_path / "data"
    out = prepare_dataset(spec, data / "custom", mirror=root, cache_dir=tmp_path / "cache",
                          progress=False, offline=True)
    assert tree_files(out, spec.domains) == rels
    for rel in rels:
        assert (out / rel).read_bytes() == (root / rel).read_bytes()
    assert sorted(entries(out)) == ["SOURCE.json", "day", "night"]
    info = json.loads((out / "SOURCE.json").read_text())
    assert info["kind"] == "mirror" and info["dataset"] == "custom"
    assert info["counts"] == {"day": 4, "night": 4} and not info["tree_sha256_verified"]
    assert entries(data) == ["custom"]
    assert folder_dataset(out, ["day", "night"]) == spec  # later stages read the copy
    df = build_manifest(out, spec)
    assert len(df) == 8 and (df["status"] == "ok").all()

    with pytest.raises(DownloadError, match=r"data\.mirror") as ei:
        prepare_dataset(spec, data / "other", cache_dir=tmp_path / "cache", progress=False)
    assert "'custom'" in str(ei.value)
    assert entries(data) == ["custom"] and not (tmp_path / "cache").exists()


# ---------------------------------------------------------------------------------------------
# failures: nothing half-written, and the message says how to place the file by hand
# ---------------------------------------------------------------------------------------------
def assert_nothing_written(tiny):
    assert files_under(tiny["cache"]) == []
    assert files_under(tiny["data"]) == []
    assert files_under(tiny["manual"]) == []


def test_wrong_checksum(tiny, http_server):
    body = zip_bytes(tiny["src"], "images/")
    url = http_server.add("tiny.zip", body)
    wrong = "0" * 64
    spec = make_spec(url, "tiny.zip", known_hash="sha256:" + wrong, tree_sha256=None)
    with pytest.raises(DownloadError) as ei:
        prepare_dataset(spec, tiny["data"] / "tiny", cache_dir=tiny["cache"],
                        manual_dir=tiny["manual"], progress=False)
    msg = str(ei.value)
    assert "tiny.zip" in msg and wrong in msg and url in msg
    assert str(tiny["manual"] / "tiny.zip") in msg
    assert "checksum" in msg and "Nothing was written" in msg
    assert_nothing_written(tiny)


def test_truncated_transfer_content_length_lie(tiny, http_server):
    body = zip_bytes(tiny["src"], "images/")
    url = http_server.add("tiny.zip", body, send_bytes=len(body) // 2)
    spec = make_spec(url, "tiny.zip", known_hash=None, tree_sha256=None)  # only the transport can tell
    with pytest.raises(DownloadError) as ei:
        prepare_dataset(spec, tiny["data"] / "tiny", cache_dir=tiny["cache"],
                        manual_dir=tiny["manual"], progress=False)
    msg = str(ei.value)
    assert "tiny.zip" in msg and "no published checksum" in msg
    assert str(tiny["manual"] / "tiny.zip") in msg
    assert_nothing_written(tiny)


@pytest.mark.parametrize("kind", ["zip", "tar.gz"])
def test_truncated_archive_served_whole(kind, tiny, http_server):
    body = zip_bytes(tiny["src"], "images/") if kind == "zip" else targz_bytes(tiny["src"])
    body = body[: len(body) * 2 // 3]  # honest Content-Length, but a truncated archive
    url = http_server.add("tiny." + kind, body)
    spec = make_spec(url, "tiny." + kind, known_hash=None, tree_sha256=None,
                     layout="zip" if kind == "zip" else "tar")
    with pytest.raises(DownloadError) as ei:
        prepare_dataset(spec, tiny["data"] / "tiny", cache_dir=tiny["cache"],
                        manual_dir=tiny["manual"], progress=False)
    msg = str(ei.value)
    assert "tiny." + kind in msg and str(tiny["manual"]) in msg
    assert_nothing_written(tiny)  # the bad archive was removed from the cache too


def test_unreachable_url(tiny, closed_port_url):
    spec = make_spec(closed_port_url, "missing.zip", known_hash=None, tree_sha256=None)
    with pytest.raises(DownloadError) as ei:
        prepare_dataset(spec, tiny["data"] / "tiny", cache_dir=tiny["cache"],
                        manual_dir=tiny["manual"], progress=False)
    msg = str(ei.value)
    assert "missing.zip" in msg and closed_port_url in msg
    assert "by hand" in msg and str(tiny["manual"] / "missing.zip") in msg
    assert "no published checksum" in msg
    assert_nothing_written(tiny)


def test_unreachable_without_manual_dir_still_explains(tiny, closed_port_url):
    remote = RemoteFile(closed_port_url, "missing.zip", "sha256:" + "a" * 64, None, "")
    with pytest.raises(DownloadError, match="manual_dir") as ei:
        fetch(remote, tiny["cache"], progress=False)
    assert "a" * 64 in str(ei.value)
    assert files_under(tiny["cache"]) == []


# ---------------------------------------------------------------------------------------------
# manual placement and mirrors (no server at all)
# ---------------------------------------------------------------------------------------------
def test_manual_placement(tiny, closed_port_url):
    body = targz_bytes(tiny["src"])
    (tiny["manual"] / "tiny.tar.gz").write_bytes(body)
    spec = make_spec(closed_port_url, "tiny.tar.gz", known_hash="sha256:" + sha(body), tree_sha256=tiny["digest"],
                     layout="tar")
    out = prepare_dataset(spec, tiny["data"] / "tiny", cache_dir=tiny["cache"],
                          manual_dir=tiny["manual"], progress=False)
    assert tree_files(out, DOMAINS) == tiny["rels"]
    info = json.loads((out / "SOURCE.json").read_text())
    assert info["kind"] == "manual" and info["archive"] == str((tiny["manual"] / "tiny.tar.gz").resolve())
    assert (tiny["manual"] / "tiny.tar.gz").read_bytes() == body  # used in place, untouched
    assert files_under(tiny["cache"]) == []


def test_manual_placement_wrong_checksum_keeps_users_file(tiny, closed_port_url):
    (tiny["manual"] / "tiny.zip").write_bytes(b"not the archive")
    spec = make_spec(closed_port_url, "tiny.zip", known_hash="sha256:" + "b" * 64, tree_sha256=None)
    with pytest.raises(DownloadError) as ei:
        prepare_dataset(spec, tiny["data"] / "tiny", cache_dir=tiny["cache"],
                        manual_dir=tiny["manual"], progress=False)
    assert "b" * 64 in str(ei.value) and "by hand" in str(ei.value)
    assert (tiny["manual"] / "tiny.zip").read_bytes() == b"not the archive"
    assert files_under(tiny["data"]) == [] and files_under(tiny["cache"]) == []


def _make_readonly(p: Path) -> None:
    for f in sorted(p.rglob("*"), reverse=True):
        f.chmod(0o444 if f.is_file() else 0o555)
    p.chmod(0o555)


def _make_writable(p: Path) -> None:
    p.chmod(0o755)
    for f in p.rglob("*"):
        f.chmod(0o644 if f.is_file() else 0o755)


@pytest.mark.parametrize("layout", ["normalised", "archive"])
def test_mirror(layout, tiny, closed_port_url):
    if layout == "normalised":
        mirror = domain_root = tiny["src"]
    else:  # extracted GitHub-like archive: <wrapper>/images/<domain>/<class>/
        mirror = tiny["src"].parent / "mirror"
        safe_extract_src = mirror.parent / "m.zip"
        safe_extract_src.write_bytes(zip_bytes(tiny["src"], "Tiny-abc/images/", {"Tiny-abc/README": b"r"}))
        safe_extract(safe_extract_src, mirror)
        domain_root = mirror / "Tiny-abc" / "images"
    (domain_root / DOMAINS[0] / CLASSES[0] / ".DS_Store").write_bytes(b"hidden")  # never copied
    spec = make_spec(closed_port_url, "tiny.zip", known_hash=None, tree_sha256=tiny["digest"])
    _make_readonly(mirror)
    try:
        out = prepare_dataset(spec, tiny["data"] / "tiny", mirror=mirror, cache_dir=tiny["cache"],
                              progress=False)
    finally:
        _make_writable(mirror)
    assert tree_files(out, DOMAINS) == tiny["rels"]
    assert not (out / DOMAINS[0] / CLASSES[0] / ".DS_Store").exists()
    info = json.loads((out / "SOURCE.json").read_text())
    assert info["kind"] == "mirror" and "mirror" not in info  # not its path: an identical copy gives the same tree
    # copies are ordinary writable files, so the tree can be replaced/deleted later
    assert os.access(out / tiny["rels"][0], os.W_OK)
    assert files_under(tiny["cache"]) == []


def test_mirror_missing_domain(tiny, closed_port_url):
    import shutil

    shutil.rmtree(tiny["src"] / "d2")
    spec = make_spec(closed_port_url, "tiny.zip", known_hash=None, tree_sha256=None)
    with pytest.raises(DownloadError) as ei:
        prepare_dataset(spec, tiny["data"] / "tiny", mirror=tiny["src"], cache_dir=tiny["cache"],
                        progress=False)
    assert "'d2'" in str(ei.value) and "images/d2" in str(ei.value)
    assert files_under(tiny["data"]) == []


def test_digest_mismatch_keeps_existing_output(tiny, closed_port_url):
    out = tiny["data"] / "tiny"
    (out / "old").mkdir(parents=True)
    (out / "old" / "marker.txt").write_text("previous good tree")
    (tiny["src"] / "d1" / "beta" / "img_001.jpg").unlink()  # incomplete mirror
    spec = make_spec(closed_port_url, "tiny.zip", known_hash=None, tree_sha256=tiny["digest"])
    with pytest.raises(DownloadError) as ei:
        prepare_dataset(spec, out, mirror=tiny["src"], cache_dir=tiny["cache"], progress=False)
    msg = str(ei.value)
    assert tiny["digest"] in msg and "d1 5" in msg and "d2 6" in msg
    assert files_under(out) == ["old/marker.txt"]
    assert entries(tiny["data"]) == ["tiny"]  # build folder removed


def test_success_replaces_existing_output(tiny, closed_port_url):
    out = tiny["data"] / "tiny"
    (out / "old").mkdir(parents=True)
    (out / "old" / "marker.txt").write_text("stale")
    spec = make_spec(closed_port_url, "tiny.zip", known_hash=None, tree_sha256=tiny["digest"])
    prepare_dataset(spec, out, mirror=tiny["src"], cache_dir=tiny["cache"], progress=False)
    assert not (out / "old").exists()
    assert tree_files(out, DOMAINS) == tiny["rels"]
    assert entries(tiny["data"]) == ["tiny"]


# ---------------------------------------------------------------------------------------------
# malicious archives
# ---------------------------------------------------------------------------------------------
def _zip_with(name: str, data: bytes = b"evil", *, symlink: bool = False) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("ok/fine.txt", b"fine")
        info = zipfile.ZipInfo(name)
        if symlink:
            info.create_system = 3
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
        zf.writestr(info, data)
    return buf.getvalue()


def _tar_with(member: tarfile.TarInfo, data: bytes = b"") -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        ok = tarfile.TarInfo("ok/fine.txt")
        ok.size = 4
        tf.addfile(ok, io.BytesIO(b"fine"))
        member.size = len(data) if member.isfile() else 0
        tf.addfile(member, io.BytesIO(data) if member.isfile() else None)
    return buf.getvalue()


def _ti(name: str, type_: bytes = tarfile.REGTYPE, linkname: str = "") -> tarfile.TarInfo:
    t = tarfile.TarInfo(name)
    t.type = type_
    t.linkname = linkname
    return t


MALICIOUS = {
    "zip-dotdot": ("evil.zip", lambda: _zip_with("../evil.txt"), "../evil.txt"),
    "zip-nested-dotdot": ("evil.zip", lambda: _zip_with("ok/../../evil.txt"), "ok/../../evil.txt"),
    "zip-absolute": ("evil.zip", lambda: _zip_with("/tmp/evil.txt"), "/tmp/evil.txt"),
    "zip-symlink-out": ("evil.zip", lambda: _zip_with("ok/link", b"../../../etc/passwd", symlink=True), "ok/link"),
    "tar-dotdot": ("evil.tar.gz", lambda: _tar_with(_ti("../evil.txt"), b"evil"), "../evil.txt"),
    "tar-absolute": ("evil.tar.gz", lambda: _tar_with(_ti("/tmp/evil.txt"), b"evil"), "/tmp/evil.txt"),
    "tar-symlink-out": ("evil.tar.gz", lambda: _tar_with(_ti("ok/link", tarfile.SYMTYPE, "/etc/passwd")), "ok/link"),
    "tar-symlink-up": ("evil.tar.gz", lambda: _tar_with(_ti("ok/link", tarfile.SYMTYPE, "../../x")), "ok/link"),
    "tar-hardlink-out": ("evil.tar.gz", lambda: _tar_with(_ti("ok/hl", tarfile.LNKTYPE, "../outside")), "ok/hl"),
    "tar-device": ("evil.tar.gz", lambda: _tar_with(_ti("ok/dev", tarfile.CHRTYPE)), "ok/dev"),
    "tar-fifo": ("evil.tar.gz", lambda: _tar_with(_ti("ok/fifo", tarfile.FIFOTYPE)), "ok/fifo"),
}


@pytest.mark.parametrize("case", sorted(MALICIOUS))
def test_safe_extract_rejects_malicious(case, tmp_path):
    fname, build, member = MALICIOUS[case]
    work = tmp_path / "a" / "b"
    work.mkdir(parents=True)
    archive = work / fname
    archive.write_bytes(build())
    dest = work / "out"
    with pytest.raises(DownloadError) as ei:
        safe_extract(archive, dest)
    assert repr(member) in str(ei.value)
    assert not dest.exists()
    assert entries(work) == [fname]  # no temporary folder left
    assert files_under(tmp_path) == [f"a/b/{fname}"]  # nothing escaped
    assert not Path("/tmp/evil.txt").exists()


def test_safe_extract_allows_internal_symlink_and_replaces_dest(tmp_path):
    archive = tmp_path / "ok.tar"
    with tarfile.open(archive, "w") as tf:
        f = tarfile.TarInfo("a/x.txt")
        f.size = 2
        tf.addfile(f, io.BytesIO(b"hi"))
        tf.addfile(_ti("a/y.txt", tarfile.SYMTYPE, "x.txt"))
    dest = tmp_path / "dest"
    dest.mkdir()
    (dest / "stale").write_text("s")
    safe_extract(archive, dest)
    assert (dest / "a" / "y.txt").read_text() == "hi"
    assert not (dest / "stale").exists()
    assert sorted(entries(tmp_path)) == ["dest", "ok.tar"]


def test_prepare_rejects_malicious_archive_and_cleans_up(tiny, http_server):
    body = zip_bytes(tiny["src"], "images/", {"../../evil.txt": b"evil"})
    url = http_server.add("tiny.zip", body)
    spec = make_spec(url, "tiny.zip", known_hash=None, tree_sha256=None)
    with pytest.raises(DownloadError, match=r"unsafe member '\.\./\.\./evil\.txt'"):
        prepare_dataset(spec, tiny["data"] / "tiny", cache_dir=tiny["cache"],
                        manual_dir=tiny["manual"], progress=False)
    assert_nothing_written(tiny)
    assert not (tiny["data"].parent / "evil.txt").exists()


def test_non_archive_download_is_reported(tiny, http_server):
    url = http_server.add("tiny.zip", b"<html>Google Drive - virus scan warning</html>")
    spec = make_spec(url, "tiny.zip", known_hash=None, tree_sha256=None)
    with pytest.raises(DownloadError, match="not a readable zip or tar") as ei:
        prepare_dataset(spec, tiny["data"] / "tiny", cache_dir=tiny["cache"],
                        manual_dir=tiny["manual"], progress=False)
    assert str(tiny["manual"] / "tiny.zip") in str(ei.value)
    assert_nothing_written(tiny)


# ---------------------------------------------------------------------------------------------
# weights
# ---------------------------------------------------------------------------------------------
def test_fetch_weights_manual_placement(tmp_path):
    manual = tmp_path / "manual"
    manual.mkdir()
    (manual / "imagenet-vgg-f.mat").write_bytes(b"MATLAB 5.0 MAT-file (test stand-in)")
    dest = tmp_path / "models"
    got = fetch_weights("vggf", dest, manual_dir=manual, progress=False)
    assert got == dest / "imagenet-vgg-f.mat"
    assert got.read_bytes() == (manual / "imagenet-vgg-f.mat").read_bytes()
    assert entries(dest) == ["imagenet-vgg-f.mat"]
    with pytest.raises(ValueError, match="vggf"):
        fetch_weights("alexnet", dest)
