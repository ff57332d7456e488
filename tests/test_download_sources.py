"""Downloads from several sources: Google Drive through gdown, then per-domain archives.

Everything runs against the local server of ``conftest.http_server``; the ``google_drive`` fixture
makes it answer for ``https://drive.google.com`` (proxy + throw-away CA), and ``loopback_only``
fails a test that tries to resolve any other host, so nothing here can reach the internet.
"""

from __future__ import annotations

import hashlib
import io
import json
import socket
import tarfile
from pathlib import Path

import pytest

from dahash.data.datasets import DATASETS, DatasetSpec, DomainArchive, RemoteFile, SplitSource
from dahash.data.download import DownloadError, is_google_drive, prepare_dataset, tree_digest, tree_files

DOMAINS = ("d1", "d2")
CLASSES = ("alpha", "beta", "gamma")
#: how the second source names the domain folders: ``d2`` as ``d_2`` (cf. Office-Home's
#: ``Real World`` in the official zip, ``Real_World`` in Transfer-Learning-Library's archive)
PART_FOLDERS = {"d1": "d1", "d2": "d_2"}


# ---------------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------------
def files_under(p: Path) -> list[str]:
    return sorted(str(f.relative_to(p)) for f in p.rglob("*") if not f.is_dir()) if p.exists() else []


def md5(b: bytes) -> str:
    return hashlib.md5(b).hexdigest()


def targz(members: dict[str, Path]) -> bytes:
    """A .tar.gz of ``{arcname: file}``."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        for arcname, path in members.items():
            tf.add(path, arcname=arcname)
    return buf.getvalue()


def whole_archive(src: Path) -> bytes:
    """The dataset's own archive: ``<domain>/images/<class>/<file>`` (Office-31-like)."""
    return targz({f"{r.split('/')[0]}/images/{r.split('/', 1)[1]}": src / r for r in tree_files(src, DOMAINS)})


def domain_archive(src: Path, domain: str) -> bytes:
    """One domain's archive as a second source lays it out: ``<folder>/<class>/<file>``."""
    rels = [r for r in tree_files(src, DOMAINS) if r.startswith(domain + "/")]
    return targz({f"{PART_FOLDERS[domain]}/{r.split('/', 1)[1]}": src / r for r in rels})


def make_spec(archive_url: str, known_hash: str | None, part_urls: dict[str, str] | None) -> DatasetSpec:
    alternates = ()
    if part_urls is not None:
        alternates = (SplitSource(
            name="per-domain archives",
            parts=tuple(
                DomainArchive(d, RemoteFile(part_urls[d], f"{d}.tgz", None, None, "part"),
                              (f"{PART_FOLDERS[d]}/images", PART_FOLDERS[d]))
                for d in DOMAINS
            ),
            note="test",
        ),)
    return DatasetSpec(
        name="tiny",
        domains=DOMAINS,
        classes=CLASSES,
        archive=RemoteFile(archive_url, "tiny.tar.gz", known_hash, None, "the dataset's archive"),
        domain_dirs={d: f"{d}/images" for d in DOMAINS},
        homepage="http://example.invalid",
        citation="none",
        tree_sha256=None,
        alternates=alternates,
    )


@pytest.fixture
def loopback_only(monkeypatch):
    """Fail the test if anything resolves a host other than the loopback (no internet access)."""
    real = socket.getaddrinfo

    def guarded(host, *args, **kwargs):
        if host not in ("127.0.0.1", "localhost", "::1"):
            raise AssertionError(f"test tried to reach {host!r}: only 127.0.0.1 is allowed")
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", guarded)


@pytest.fixture
def tiny(tmp_path, make_image_tree):
    src = tmp_path / "src"
    rels = make_image_tree(src, DOMAINS, CLASSES, n_per_class=2)
    work = tmp_path / "work"
    (work / "manual").mkdir(parents=True)
    return {"src": src, "rels": rels, "digest": tree_digest(src, DOMAINS),
            "cache": work / "cache", "manual": work / "manual", "data": work / "data"}


def prepare(spec: DatasetSpec, tiny: dict, **kw) -> Path:
    return prepare_dataset(spec, tiny["data"] / "tiny", cache_dir=tiny["cache"], manual_dir=tiny["manual"],
                           progress=False, **kw)


def assert_same_tree(out: Path, tiny: dict) -> None:
    assert tree_files(out, DOMAINS) == tiny["rels"]
    assert tree_digest(out, DOMAINS) == tiny["digest"]


def assert_no_partial_files(tiny: dict) -> None:
    """No temporary download/extraction folders or files anywhere, no output folder."""
    leftovers = [f for f in files_under(tiny["cache"]) if "partial" in f or f.endswith((".part", ".tmp"))]
    assert leftovers == []
    assert not tiny["data"].exists() or sorted(p.name for p in tiny["data"].iterdir()) == []


# ---------------------------------------------------------------------------------------------
# Google Drive through gdown
# ---------------------------------------------------------------------------------------------
def test_drive_confirmation_page_followed_and_file_verified(tiny, google_drive, loopback_only):
    """Drive answers with its virus-scan page; the form's token leads to the file, which is md5-checked.
    (Before gdown, the confirmation HTML itself was saved and failed the checksum.)"""
    body = whole_archive(tiny["src"])
    url = google_drive.add_drive("FILEid_1234567890", body, "tiny.tar.gz")
    assert is_google_drive(url)
    spec = make_spec(url, "md5:" + md5(body), part_urls=None)

    out = prepare(spec, tiny)

    assert_same_tree(out, tiny)
    assert google_drive.hits["/uc"] == 1 and google_drive.hits["/download"] == 1  # page, then file
    assert google_drive.hits["CONNECT drive.google.com"] >= 1
    assert google_drive.hits["CONNECT drive.usercontent.google.com"] >= 1
    info = json.loads((out / "SOURCE.json").read_text())
    assert info["kind"] == "download" and info["url"] == url
    assert info["archive_known_hash"] == "md5:" + md5(body)
    assert info["archive_sha256"] == hashlib.sha256(body).hexdigest()
    assert files_under(tiny["cache"]) == ["tiny.tar.gz"]


@pytest.mark.parametrize("how", ["short transfer", "truncated file"])
def test_drive_truncated_file_rejected_nothing_half_written(how, tiny, google_drive, loopback_only):
    body = whole_archive(tiny["src"])
    if how == "short transfer":  # Content-Length announces the whole file, the connection ends early
        url = google_drive.add_drive("FILEid_short", body, "tiny.tar.gz", send_bytes=len(body) // 2)
    else:  # an honest Content-Length, but the file itself is cut: only the checksum can tell
        url = google_drive.add_drive("FILEid_cut", body[: len(body) // 2], "tiny.tar.gz")
    spec = make_spec(url, "md5:" + md5(body), part_urls=None)

    with pytest.raises(DownloadError) as ei:
        prepare(spec, tiny)

    msg = str(ei.value)
    assert "'tiny.tar.gz'" in msg and "md5 " + md5(body) in msg and url in msg
    assert str(tiny["manual"] / "tiny.tar.gz") in msg
    assert google_drive.hits["/download"] == 1  # the confirmation was followed
    assert files_under(tiny["cache"]) == []  # no partial download, no unverified copy
    assert_no_partial_files(tiny)


# ---------------------------------------------------------------------------------------------
# several sources
# ---------------------------------------------------------------------------------------------
def test_drive_404_falls_through_to_per_domain_archives(tiny, google_drive, loopback_only):
    """The first source (a Drive file that is gone) fails; the second, one archive per domain with
    its own folder naming ('d_2' for domain 'd2'), gives the same normalised tree."""
    drive_url = "https://drive.google.com/uc?export=download&id=GONE_123456"  # not registered: 404
    parts = {d: google_drive.add(f"parts/{d}.tgz", domain_archive(tiny["src"], d)) for d in DOMAINS}
    spec = make_spec(drive_url, "md5:" + "0" * 32, part_urls=parts)

    out = prepare(spec, tiny)

    assert_same_tree(out, tiny)
    assert google_drive.hits["/uc"] == 1
    assert all(google_drive.hits[f"/parts/{d}.tgz"] == 1 for d in DOMAINS)
    info = json.loads((out / "SOURCE.json").read_text())
    assert info["source"] == "per-domain archives" and info["kind"] == "download"
    assert [a["url"] for a in info["archives"]] == [parts[d] for d in DOMAINS]
    assert all(a["archive_known_hash"] is None for a in info["archives"])  # unverified, and says so
    assert info["tree_sha256_verified"] is False
    assert sorted(files_under(tiny["cache"])) == ["tiny-2/d1.tgz", "tiny-2/d2.tgz"]

    # a second run uses the cached parts: no network at all
    prepare(spec, tiny)
    assert google_drive.hits["/uc"] == 1 and all(google_drive.hits[f"/parts/{d}.tgz"] == 1 for d in DOMAINS)


def test_all_sources_fail_one_error_names_everything(tiny, google_drive, loopback_only):
    drive_url = "https://drive.google.com/uc?export=download&id=GONE_123456"
    good = google_drive.add("parts/d1.tgz", domain_archive(tiny["src"], "d1"))
    missing = google_drive.url("parts/d2.tgz")  # 404
    checksum = "md5:" + "ab" * 16
    spec = make_spec(drive_url, checksum, part_urls={"d1": good, "d2": missing})

    with pytest.raises(DownloadError) as ei:
        prepare(spec, tiny)

    msg = str(ei.value)
    assert "any of its 2 sources" in msg and "was not changed" in msg
    for needle in ("tiny.tar.gz", "md5 " + "ab" * 16, drive_url, "per-domain archives", "d1.tgz", "d2.tgz",
                   good, missing, "no published checksum", str(tiny["manual"]), "404"):
        assert needle in msg, needle
    assert msg.index(drive_url) < msg.index(missing)  # in the order tried
    assert_no_partial_files(tiny)


def test_per_domain_archives_placed_by_hand_are_used_without_network(tiny, google_drive, loopback_only):
    """Local copies of any source win over downloading an earlier one."""
    body = whole_archive(tiny["src"])
    url = google_drive.add_drive("FILEid_unused", body, "tiny.tar.gz")
    parts = {d: google_drive.url(f"parts/{d}.tgz") for d in DOMAINS}
    for d in DOMAINS:
        (tiny["manual"] / f"{d}.tgz").write_bytes(domain_archive(tiny["src"], d))
    spec = make_spec(url, "md5:" + md5(body), part_urls=parts)

    out = prepare(spec, tiny)

    assert_same_tree(out, tiny)
    assert sum(google_drive.hits.values()) == 0
    assert json.loads((out / "SOURCE.json").read_text())["kind"] == "manual"


def test_source_json_of_per_domain_archives_names_no_absolute_path(tiny, google_drive, loopback_only,
                                                                   monkeypatch, tmp_path):
    """The download stage's SOURCE.json (a DVC output, pushed and shared) holds no path of this machine, for the
    per-domain archives of a second source too (issue 23 point 10), and no time (point 12)."""
    import stages.download as dl

    body = whole_archive(tiny["src"])
    url = google_drive.add_drive("FILEid_unused2", body, "tiny.tar.gz")
    for d in DOMAINS:
        (tiny["manual"] / f"{d}.tgz").write_bytes(domain_archive(tiny["src"], d))
    spec = make_spec(url, "md5:" + md5(body), part_urls={d: google_drive.url(f"parts/{d}.tgz") for d in DOMAINS})
    out = prepare(spec, tiny)
    monkeypatch.setattr(dl, "ROOT", tmp_path / "work")  # the project holding manual/, cache/ and data/
    dl.portable_source_json(out / "SOURCE.json")
    text = (out / "SOURCE.json").read_text()
    info = json.loads(text)
    assert str(tmp_path) not in text, text
    assert [a["archive"] for a in info["archives"]] == [f"manual/{d}.tgz" for d in DOMAINS]
    assert "created" not in info


def test_offline_env_never_touches_the_network(tiny, google_drive, loopback_only, monkeypatch):
    """DAHASH_OFFLINE=1 (stages.download.offline): no request reaches the server, even though every
    source would work; the error names every source and the files to place by hand."""
    from stages.download import offline

    monkeypatch.setenv("DAHASH_OFFLINE", "1")
    body = whole_archive(tiny["src"])
    url = google_drive.add_drive("FILEid_offline", body, "tiny.tar.gz")
    parts = {d: google_drive.add(f"parts/{d}.tgz", domain_archive(tiny["src"], d)) for d in DOMAINS}
    spec = make_spec(url, "md5:" + md5(body), part_urls=parts)

    with pytest.raises(DownloadError) as ei:
        prepare(spec, tiny, offline=offline())

    msg = str(ei.value)
    assert "offline mode" in msg and url in msg and parts["d2"] in msg
    assert str(tiny["manual"]) in msg and "tiny.tar.gz" in msg and "d1.tgz" in msg
    assert sum(google_drive.hits.values()) == 0
    assert files_under(tiny["cache"]) == [] and files_under(tiny["data"]) == []


@pytest.mark.parametrize("fault", ["wrong layout", "truncated"])
def test_bad_domain_archive_is_reported_and_dropped(fault, tiny, http_server, loopback_only):
    """A per-domain archive (no checksum to catch it) that lacks the expected folder, or is cut short
    though served with an honest Content-Length, is reported by name and removed from the cache."""
    if fault == "wrong layout":
        bad = targz({"elsewhere/x.txt": tiny["src"] / tiny["rels"][0]})
    else:
        whole = domain_archive(tiny["src"], "d2")
        bad = whole[: len(whole) // 2]
    parts = {"d1": http_server.add("parts/d1.tgz", domain_archive(tiny["src"], "d1")),
             "d2": http_server.add("parts/d2.tgz", bad)}
    spec = make_spec(http_server.url("gone.tar.gz"), None, part_urls=parts)
    with pytest.raises(DownloadError) as ei:
        prepare(spec, tiny)
    msg = str(ei.value)
    assert "d2.tgz" in msg and str(tiny["manual"] / "d2.tgz") in msg and "cached archive was deleted" in msg
    if fault == "wrong layout":
        assert "'d2' class folders" in msg and "d_2" in msg and "elsewhere" in msg
    else:
        assert "truncated" in msg
    assert files_under(tiny["cache"]) == ["tiny-2/d1.tgz"]  # the bad part was dropped, the good one kept
    assert_no_partial_files(tiny)


# ---------------------------------------------------------------------------------------------
# the registry
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["office_home", "office31"])
def test_registry_sources(name):
    """Drive archives are fetched with gdown; the second source has one archive per domain, from
    Transfer-Learning-Library's download lists, accepting its folder names."""
    spec = DATASETS[name]
    assert is_google_drive(spec.archive.url) and spec.archive.known_hash is not None
    (alt,) = spec.alternates
    assert [p.domain for p in alt.parts] == list(spec.domains)
    assert all(p.remote.url.startswith("https://cloud.tsinghua.edu.cn/f/") for p in alt.parts)
    assert all(p.remote.known_hash is None for p in alt.parts)  # none published: not invented
    folders = {p.domain: p.folders for p in alt.parts}
    if name == "office_home":
        assert "Real_World" in folders["RealWorld"] and "Real World" in folders["RealWorld"]
    else:
        assert folders["amazon"][0] == "amazon/images"
    assert not is_google_drive(DATASETS["office_caltech10"].archive.url)
