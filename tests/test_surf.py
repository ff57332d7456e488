"""dahash.data.surf: SURF-800 Office-Caltech-10 loader, image-name mapping, preprocessing; the benchmark runner
(benchmarks/surf_benchmark.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import scipy.io

from dahash.baselines import GFK, SourceOnly
from dahash.data.surf import (
    CLASSES,
    DOMAINS,
    SurfDomain,
    image_relpath,
    load_surf,
    surf_preprocess,
)
from benchmarks.surf_benchmark import surf_benchmark

_MAT_CLASS = ["back_pack", "bike", "calculator", "headphones", "keyboard", "laptop_computer", "monitor",
              "mouse", "mug", "projector"]
_PREFIX = {"amazon": "amazon", "caltech10": "Caltech10", "dslr": "dslr", "webcam": "webcam"}


def write_surf(folder: Path, domain: str, labels: list[int], *, seed: int = 0, names: bool = True,
               shift: float = 0.0) -> np.ndarray:
    """Write ``surf/<domain>.mat`` (uint8 counts, labels 1..10 as N x 1) and the names file."""
    rng = np.random.default_rng(seed)
    lab = np.asarray(labels)
    # class-dependent word histograms so that a classifier has something to learn
    word = np.arange(800)
    rates = 0.2 + 3.0 * (word[None, :] % 10 == (lab[:, None] - 1)) + shift * (word % 7 == 0)
    fts = rng.poisson(rates).astype(np.uint8)
    (folder / "surf").mkdir(parents=True, exist_ok=True)
    scipy.io.savemat(folder / "surf" / f"{domain}.mat",
                     {"fts": fts, "labels": lab.reshape(-1, 1).astype(np.uint8)})
    if names:
        cell = np.empty((len(lab), 1), dtype=object)
        for i, c in enumerate(lab):
            cls = _MAT_CLASS[c - 1]
            cell[i, 0] = (f"Caltech256_{cls}_{100 + c:03d}_{i + 1:04d}" if domain == "caltech10"
                          else f"{domain}_{cls}_frame_{i + 1:04d}")
        (folder / "surf_imgnames").mkdir(parents=True, exist_ok=True)
        path = folder / "surf_imgnames" / f"{_PREFIX[domain]}_SURF_L10_imgs.mat"
        scipy.io.savemat(path, {"imgNames": cell})
    return fts


def test_load_generated_mat_files(tmp_path: Path) -> None:
    labels = [1, 1, 2, 6, 10, 10, 3]
    fts = write_surf(tmp_path, "caltech10", labels)
    dom = load_surf(tmp_path, "caltech10", require_names=True)
    assert isinstance(dom, SurfDomain) and dom.domain == "caltech10"
    assert dom.features.shape == (7, 800) and dom.features.dtype == np.float64
    np.testing.assert_array_equal(dom.features, fts)
    np.testing.assert_array_equal(dom.labels, np.array(labels) - 1)
    assert dom.labels.dtype.kind == "i"
    assert dom.image_names[0] == "Caltech256_back_pack_101_0001"
    assert [image_relpath(n, "caltech10") for n in dom.image_names[3:5]] == [
        "caltech10/laptop/106_0004.jpg", "caltech10/projector/110_0005.jpg"]
    # every name's folder is the class of its label
    for name, y in zip(dom.image_names, dom.labels):
        assert image_relpath(name, "caltech10").split("/")[1] == CLASSES[y]


def test_names_file_is_optional_unless_required(tmp_path: Path) -> None:
    write_surf(tmp_path, "dslr", [1, 2, 3], names=False)
    assert load_surf(tmp_path, "dslr").image_names == []
    with pytest.raises(ValueError, match="folder"):
        load_surf(tmp_path, "dslr", require_names=True)


def test_load_surf_bad_input(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="domain"):
        load_surf(tmp_path, "imagenet")
    with pytest.raises(ValueError, match="folder"):
        load_surf(tmp_path, "webcam")  # missing file
    (tmp_path / "surf").mkdir()
    scipy.io.savemat(tmp_path / "surf" / "webcam.mat", {"fts": np.zeros((3, 700)), "labels": np.ones((3, 1))})
    with pytest.raises(ValueError, match="800"):
        load_surf(tmp_path, "webcam")
    bad_labels = {"fts": np.zeros((3, 800)), "labels": np.full((3, 1), 11)}
    scipy.io.savemat(tmp_path / "surf" / "webcam.mat", bad_labels)
    with pytest.raises(ValueError, match="labels"):
        load_surf(tmp_path, "webcam")
    scipy.io.savemat(tmp_path / "surf" / "webcam.mat", {"fts": np.zeros((3, 800)), "labels": np.ones((2, 1))})
    with pytest.raises(ValueError, match="labels"):
        load_surf(tmp_path, "webcam")
    scipy.io.savemat(tmp_path / "surf" / "webcam.mat", {"X": np.zeros((3, 800))})
    with pytest.raises(ValueError, match="fts"):
        load_surf(tmp_path, "webcam")
    # names file with the wrong number of rows
    write_surf(tmp_path, "amazon", [1, 2, 3])
    cell = np.empty((2, 1), dtype=object)
    cell[0, 0], cell[1, 0] = "amazon_bike_frame_0001", "amazon_bike_frame_0002"
    scipy.io.savemat(tmp_path / "surf_imgnames" / "amazon_SURF_L10_imgs.mat", {"imgNames": cell})
    with pytest.raises(ValueError, match="names"):
        load_surf(tmp_path, "amazon")


def test_image_relpath() -> None:
    assert image_relpath("amazon_back_pack_frame_0001", "amazon") == "amazon/backpack/frame_0001.jpg"
    assert image_relpath("webcam_laptop_computer_frame_0030", "webcam") == "webcam/laptop/frame_0030.jpg"
    assert image_relpath("dslr_mug_frame_0008", "dslr") == "dslr/mug/frame_0008.jpg"
    assert image_relpath("Caltech256_headphones_101_0007", "caltech10") == "caltech10/headphones/101_0007.jpg"
    with pytest.raises(ValueError, match="name"):
        image_relpath("webcam_mug_frame_0001", "amazon")
    with pytest.raises(ValueError, match="name"):
        image_relpath("amazon_sofa_frame_0001", "amazon")
    with pytest.raises(ValueError, match="name"):
        image_relpath("amazon_mug", "amazon")


def test_surf_preprocess_is_l1_then_zscore() -> None:
    rng = np.random.default_rng(0)
    X = rng.poisson(2.0, size=(40, 30)).astype(float)
    X[:, 5] = 0.0  # a word that never occurs: constant column -> 0, not NaN
    Z = surf_preprocess(X)
    H = X / X.sum(axis=1, keepdims=True)
    keep = np.arange(30) != 5
    np.testing.assert_allclose(Z[:, keep], (H[:, keep] - H[:, keep].mean(0)) / H[:, keep].std(0))
    np.testing.assert_allclose(Z.mean(0), 0.0, atol=1e-12)
    np.testing.assert_allclose(Z[:, keep].std(0), 1.0)  # population std (ddof=0)
    assert np.all(Z[:, 5] == 0.0)
    # invariant to the histogram's total count (it is L1-normalised first)
    np.testing.assert_allclose(surf_preprocess(3 * X), Z)
    np.testing.assert_allclose(surf_preprocess([[1, 3], [2, 2]]), [[-1, 1], [1, -1]])
    with pytest.raises(ValueError, match="X"):
        surf_preprocess([[1.0, -1.0]])
    with pytest.raises(ValueError, match="X"):
        surf_preprocess([1.0, 2.0])


def test_surf_benchmark_on_generated_files(tmp_path: Path) -> None:
    labels = [c for c in range(1, 11) for _ in range(6)]
    write_surf(tmp_path, "amazon", labels, seed=1)
    write_surf(tmp_path, "webcam", labels, seed=2, shift=2.0)
    lines: list[str] = []
    table = surf_benchmark(tmp_path, {"SO": lambda: SourceOnly("1nn"), "GFK": lambda: GFK(dim=10)},
                           tasks=[("amazon", "webcam"), ("webcam", "amazon")], log=lines.append)
    assert list(table.index) == ["A->W", "W->A", "mean"] and list(table.columns) == ["SO", "GFK"]
    assert len(lines) == 2 and lines[0].startswith("A->W")
    assert ((table.values >= 0) & (table.values <= 100)).all()
    assert table.loc["A->W", "SO"] > 50  # the generated classes are easy
    with pytest.raises(ValueError, match="domain"):
        surf_benchmark(tmp_path, {"SO": lambda: SourceOnly("1nn")}, tasks=[("amazon", "office")])


# ---------------------------------------------------------------------------------------------
# the real files (../shared/data)
# ---------------------------------------------------------------------------------------------
@pytest.mark.realdata
def test_real_surf_files(shared_data: Path) -> None:
    root = shared_data / "office-caltech-10"
    counts = {"amazon": 958, "caltech10": 1123, "dslr": 157, "webcam": 295}
    rng = np.random.default_rng(0)
    for domain in DOMAINS:
        dom = load_surf(root / "features", domain, require_names=True)
        assert dom.features.shape == (counts[domain], 800)
        assert sorted(np.unique(dom.labels).tolist()) == list(range(10))
        assert len(dom.image_names) == counts[domain]
        assert np.all(dom.features >= 0) and np.all(dom.features.sum(axis=1) > 0)
        for i in rng.choice(counts[domain], size=25, replace=False):
            rel = image_relpath(dom.image_names[i], domain)
            assert (root / "images" / rel).is_file(), rel
            assert rel.split("/")[1] == CLASSES[dom.labels[i]]


@pytest.mark.realdata
def test_real_surf_amazon_to_webcam_accuracies(shared_data: Path) -> None:
    """SURF A->W: 1-NN ~30% (JDA paper: 29.8%), GFK(d=20) ~39% (JDA paper: 39.0%)."""
    folder = shared_data / "office-caltech-10" / "features"
    a, w = load_surf(folder, "amazon"), load_surf(folder, "webcam")
    Xa, Xw = surf_preprocess(a.features), surf_preprocess(w.features)
    so = np.mean(SourceOnly("1nn").fit(Xa, a.labels, Xw).predict(Xw) == w.labels)
    gfk = np.mean(GFK(dim=20).fit(Xa, a.labels, Xw).predict(Xw) == w.labels)
    assert 0.20 <= so <= 0.35, so
    assert 0.30 <= gfk <= 0.50, gfk
    assert gfk > so + 0.03


def test_surf_features_for_orders_rows_by_image_path(tmp_path: Path) -> None:
    """Rows come back in the order of the given image paths, preprocessed over the domain's rows."""
    from dahash.data.surf import surf_features_for

    fts = write_surf(tmp_path, "webcam", [1, 2, 6, 10])
    paths = ["webcam/laptop/frame_0003.jpg", "webcam/backpack/frame_0001.jpg",
             "webcam/projector/frame_0004.jpg", "webcam/bike/frame_0002.jpg"]
    got = surf_features_for(tmp_path, "webcam", paths)
    want = surf_preprocess(fts[[2, 0, 3, 1]].astype(np.float64))
    assert got.shape == (4, 800) and got.dtype == np.float32
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_surf_features_for_names_a_missing_image(tmp_path: Path) -> None:
    from dahash.data.surf import surf_features_for

    write_surf(tmp_path, "dslr", [1, 2])
    with pytest.raises(ValueError, match="dslr/mug/frame_0009.jpg"):
        surf_features_for(tmp_path, "dslr", ["dslr/backpack/frame_0001.jpg", "dslr/mug/frame_0009.jpg"])
    write_surf(tmp_path, "amazon", [1, 2], names=False)
    with pytest.raises(ValueError, match="image-name file"):
        surf_features_for(tmp_path, "amazon", ["amazon/backpack/frame_0001.jpg"])


@pytest.mark.realdata
def test_real_surf_files_match_the_registry_and_the_images(shared_data: Path) -> None:
    """The shared SURF files have the registry's sha256 and every Office-Caltech-10 image has a SURF row."""
    from dahash.data.datasets import SURF800_FILES
    from dahash.data.download import sha256_file
    from dahash.data.surf import surf_features_for

    folder = shared_data / "office-caltech-10" / "features"
    for rel, remote in SURF800_FILES.items():
        assert f"sha256:{sha256_file(folder / rel)}" == remote.known_hash, rel
    images = shared_data / "office-caltech-10" / "images"
    for domain, n in {"amazon": 958, "caltech10": 1123, "dslr": 157, "webcam": 295}.items():
        paths = sorted(p.relative_to(images).as_posix() for p in (images / domain).rglob("*.jpg"))
        assert len(paths) == n
        feats = surf_features_for(folder, domain, paths)
        assert feats.shape == (n, 800) and np.isfinite(feats).all()
