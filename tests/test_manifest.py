from __future__ import annotations

import time

import pandas as pd
import pytest
from PIL import Image

from dahash.data.datasets import DATASETS, DatasetSpec, RemoteFile
from dahash.data.download import prepare_dataset
from dahash.data.manifest import COLUMNS, build_manifest, manifest_summary, read_manifest, write_manifest

from conftest import write_image

SPEC = DatasetSpec(
    name="tiny",
    domains=("src", "tgt"),
    classes=("cat", "dog", "owl"),
    archive=RemoteFile("http://127.0.0.1:9/x.zip", "x.zip", None, None, "test"),
    domain_dirs={"src": "src", "tgt": "tgt"},
    homepage="h",
    citation="c",
    tree_sha256=None,
)


@pytest.fixture
def messy_tree(tmp_path):
    root = tmp_path / "data"
    # good images in unusual modes
    write_image(root / "src/dog/gray.png", mode="L", size=(5, 4), seed=1)
    write_image(root / "src/dog/cmyk.jpg", mode="CMYK", size=(7, 3), seed=2)
    write_image(root / "src/cat/rgba.png", mode="RGBA", size=(6, 6), seed=3)
    write_image(root / "src/cat/plain.jpg", size=(9, 8), seed=4)
    write_image(root / "src/owl/pal.png", mode="P", size=(4, 4), seed=5)
    # bad files
    (root / "src/cat/corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is not a jpeg at all")
    (root / "src/owl/empty.jpg").write_bytes(b"")
    good = (root / "src/cat/plain.jpg").read_bytes()
    (root / "src/owl/truncated.jpg").write_bytes(good[: len(good) // 2])
    write_image(root / "src/zebra/z.jpg", seed=6)  # unknown class folder
    write_image(root / "src/loose.jpg", seed=7)  # not inside a class folder
    # target domain: only two classes present
    write_image(root / "tgt/owl/o1.jpg", seed=8)
    write_image(root / "tgt/cat/c1.jpg", seed=9)
    return root


def test_manifest_modes_and_exclusions(messy_tree):
    df = build_manifest(messy_tree, SPEC)
    assert list(df.columns) == list(COLUMNS)
    assert len(df) == 12  # every file listed
    rows = df.set_index("path")

    for path, mode, size in [
        ("src/dog/gray.png", "L", (5, 4)),
        ("src/dog/cmyk.jpg", "CMYK", (7, 3)),
        ("src/cat/rgba.png", "RGBA", (6, 6)),
        ("src/cat/plain.jpg", "RGB", (9, 8)),
        ("src/owl/pal.png", "P", (4, 4)),
        ("tgt/owl/o1.jpg", "RGB", (8, 6)),
    ]:
        r = rows.loc[path]
        assert (r.status, r.reason, r["mode"], (r.width, r.height)) == ("ok", "", mode, size), path

    def excluded(path):
        r = rows.loc[path]
        assert r.status == "excluded" and r.width == 0 and r.height == 0
        return r.reason

    assert excluded("src/cat/corrupt.jpg").startswith("cannot decode:")
    assert excluded("src/owl/truncated.jpg").startswith("cannot decode:")
    assert excluded("src/owl/empty.jpg") == "empty file"
    assert excluded("src/zebra/z.jpg").startswith("unknown class folder 'zebra'")
    assert rows.loc["src/zebra/z.jpg"].label == -1
    assert excluded("src/loose.jpg") == "not inside a class folder"

    # labels: the registry's class order, the same in every domain
    ok = df[df.status == "ok"]
    for _, r in ok.iterrows():
        assert SPEC.classes[r.label] == r.class_name
    assert rows.loc["tgt/owl/o1.jpg"].label == rows.loc["src/owl/pal.png"].label == 2
    assert rows.loc["tgt/cat/c1.jpg"].label == rows.loc["src/cat/plain.jpg"].label == 0

    # sorted by domain (spec order), label, path
    keys = list(zip(df.domain.map(SPEC.domains.index), df.label, df.path))
    assert keys == sorted(keys)
    assert df.label.dtype == "int64" and df.width.dtype == "int64"


def test_manifest_domain_subset_and_missing_domain(messy_tree, tmp_path):
    df = build_manifest(messy_tree, SPEC, domains=["tgt"])
    assert set(df.domain) == {"tgt"} and len(df) == 2
    with pytest.raises(ValueError, match="unknown domain"):
        build_manifest(messy_tree, SPEC, domains=["nope"])
    (tmp_path / "only_src" / "src").mkdir(parents=True)
    with pytest.raises(ValueError) as ei:
        build_manifest(tmp_path / "only_src", SPEC)
    assert str(tmp_path / "only_src" / "tgt") in str(ei.value) and "'tiny'" in str(ei.value)


def test_parquet_round_trip_and_summary(messy_tree, tmp_path):
    df = build_manifest(messy_tree, SPEC)
    path = tmp_path / "out" / "manifest.parquet"
    write_manifest(df, path)
    assert sorted(p.name for p in path.parent.iterdir()) == ["manifest.parquet"]  # no temp file
    back = read_manifest(path)
    pd.testing.assert_frame_equal(back, df)

    s = manifest_summary(back)
    assert s["total"] == 12 and s["ok"] == 7 and s["excluded"] == 5
    assert s["by_domain"]["src"] == {"ok": 5, "excluded": 5, "total": 10}
    assert s["by_domain"]["tgt"] == {"ok": 2, "excluded": 0, "total": 2}
    assert s["by_class"]["src"] == {"cat": 2, "dog": 2, "owl": 1}
    assert {e["path"] for e in s["excluded_files"]} >= {"src/owl/empty.jpg", "src/cat/corrupt.jpg"}
    import json

    json.dumps(s)  # serialisable


def test_read_manifest_errors_name_the_file(tmp_path):
    missing = tmp_path / "nope.parquet"
    with pytest.raises(FileNotFoundError, match="nope.parquet"):
        read_manifest(missing)
    bad = tmp_path / "bad.parquet"
    pd.DataFrame({"path": ["a"], "domain": ["d"]}).to_parquet(bad)
    with pytest.raises(ValueError, match="bad.parquet.*label"):
        read_manifest(bad)
    junk = tmp_path / "junk.parquet"
    junk.write_bytes(b"not parquet")
    with pytest.raises(ValueError, match="junk.parquet"):
        read_manifest(junk)


def test_empty_domain_folders_give_empty_typed_manifest(tmp_path):
    for d in SPEC.domains:
        (tmp_path / d).mkdir()
    df = build_manifest(tmp_path, SPEC)
    assert df.empty and list(df.columns) == list(COLUMNS)
    write_manifest(df, tmp_path / "m.parquet")
    assert read_manifest(tmp_path / "m.parquet").empty


@pytest.mark.realdata
def test_realdata_office_caltech10(shared_data, tmp_path):
    spec = DATASETS["office_caltech10"]
    t0 = time.perf_counter()
    out = prepare_dataset(spec, tmp_path / "office_caltech10",
                          mirror=shared_data / "office-caltech-10", cache_dir=tmp_path / "cache",
                          progress=False)
    t_prepare = time.perf_counter() - t0
    df = build_manifest(out, spec)
    t_total = time.perf_counter() - t0
    print(f"\nrealdata office_caltech10: prepare {t_prepare:.1f}s, prepare+manifest {t_total:.1f}s")

    import json

    info = json.loads((out / "SOURCE.json").read_text())
    assert info["tree_sha256"] == spec.tree_sha256 and info["tree_sha256_verified"]
    counts = df.groupby("domain").size().to_dict()
    assert counts == {"amazon": 958, "caltech10": 1123, "dslr": 157, "webcam": 295}
    assert (df.status == "ok").all()
    assert sorted(df.class_name.unique()) == list(spec.classes)
    for d in spec.domains:
        assert set(df[df.domain == d].class_name) == set(spec.classes)
    gray = df[df["mode"] == "L"]
    assert sorted(gray.path) == [
        "caltech10/headphones/101_0069.jpg",
        "caltech10/keyboard/045_0053.jpg",
        "caltech10/laptop/127_0058.jpg",
        "caltech10/laptop/127_0103.jpg",
    ]
    assert set(df["mode"]) == {"RGB", "L"}
    # the pixels are untouched copies
    with Image.open(out / gray.path.iloc[0]) as img:
        assert img.mode == "L"
