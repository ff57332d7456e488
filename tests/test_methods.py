"""dahash.baselines.registry: every comparison algorithm behind ``run_baseline``, the options check, the target-label
rule (only SuH reads target labels, and only those of the split's database part) and determinism.

All runs use a tiny two-Gaussian-blob domain shift (3 classes, 16-d, 60 items per domain) and a handful of
iterations/epochs, so the file stays within seconds on two busy cores.
"""

from __future__ import annotations

import inspect

import numpy as np
import pytest

from dahash.eval.split import target_query_database_split
from dahash.baselines.registry import ALGORITHMS, BaselineOutput, accepted_options, algorithm_of, check_options, run_baseline

C, F, N = 3, 16, 60
BITS = 8

#: small options so that every algorithm finishes in well under a second or two
TINY: dict[str, dict] = {
    "source_only": {"hidden_dims": [16, 16], "epochs": 2, "batch_size": 32},
    "dan": {"hidden_dims": [16, 16], "epochs": 2, "batch_size": 32},
    "dann": {"hidden_dims": [16, 16], "epochs": 2, "batch_size": 32, "domain_hidden": [8, 8]},
    "shallow_source_only": {},
    "tca": {"dim": 5},
    "gfk": {"dim": 4},
    "coral": {},
    "jda": {"dim": 5, "n_iter": 2},
    "itq": {"n_iter": 5},
    "kmh": {"n_iter": 3, "max_inner_iter": 10},
    "ba": {"n_mu": 2, "itq_iter": 5, "svm_max_iter": 200},
    "bdnn": {"hidden_dims": [16], "outer_iter": 2, "inner_iter": 5, "itq_iter": 5},
    "noda": {"epochs": 2, "batch_size": 32},
    "suh": {"epochs": 2, "batch_size": 32},
}

#: the arrays each algorithm promises (module docstring of dahash.baselines.registry)
EXPECTED_KEYS = {
    **{m: {"pred_target", "f_source", "f_target"} for m in ("source_only", "dan", "dann")},
    **{m: {"pred_target"} for m in ("shallow_source_only", "tca", "gfk", "coral", "jda")},
    **{m: {"u_target"} for m in ("itq", "kmh", "ba", "bdnn", "suh")},
    "noda": {"u_source", "u_target"},
}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def blobs(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(xs, ys, xt, yt)``: 3 Gaussian classes; the target is the source shifted by a constant offset."""
    rng = np.random.default_rng(seed)
    centres = 3.0 * rng.standard_normal((C, F))
    ys = np.repeat(np.arange(C), N // C)
    yt = rng.permutation(ys)
    xs = centres[ys] + rng.standard_normal((N, F))
    xt = centres[yt] + 1.5 + rng.standard_normal((N, F))
    return xs.astype(np.float32), ys.astype(np.int64), xt.astype(np.float32), yt.astype(np.int64)


def suh_inputs(yt: np.ndarray) -> dict[str, np.ndarray]:
    _, db = target_query_database_split(len(yt), query_fraction=0.25, seed=0)
    return {"yt_database": yt[db], "database_idx": db}


def run(name: str, data=None, options: dict | None = None, **kw) -> BaselineOutput:
    xs, ys, xt, yt = data if data is not None else blobs()
    extra = suh_inputs(yt) if name == "suh" else {}
    extra.update(kw)
    return run_baseline(name, xs, ys, xt, C, options=options or TINY[name], bits=BITS, seed=0, **extra)


def test_tiny_options_cover_every_algorithm() -> None:
    assert set(TINY) == set(EXPECTED_KEYS) == set(ALGORITHMS)


# ----------------------------------------------------------------------------- (a) every algorithm runs
@pytest.mark.parametrize("name", ALGORITHMS)
def test_every_algorithm_returns_what_its_family_promises(name: str) -> None:
    out = run(name)
    algo = algorithm_of(name)
    assert set(out.arrays) == EXPECTED_KEYS[name], name
    assert out.seconds >= 0.0
    a = out.arrays
    if "pred_target" in a:
        assert a["pred_target"].shape == (N,) and a["pred_target"].dtype == np.int64
        assert set(np.unique(a["pred_target"])) <= set(range(C))
    for key, n in (("f_source", N), ("f_target", N)):
        if key in a:
            assert a[key].dtype == np.float32 and a[key].shape == (n, 16)  # fc7 width = hidden_dims[1]
            assert np.isfinite(a[key]).all()
    for key in ("u_source", "u_target"):
        if key in a:
            assert a[key].shape == (N, BITS) and a[key].dtype == np.float32
            assert np.isfinite(a[key]).all()
    if algo.family == "deep":
        assert algo.retrieval is None
        assert [h["epoch"] for h in out.history] == [1, 2]  # one record per epoch
    else:
        assert out.history == []
    if algo.family == "shallow":
        assert algo.retrieval is None
    if name in ("itq", "kmh", "ba", "bdnn", "suh"):  # binary codes, target-only retrieval
        assert set(np.unique(a["u_target"])) <= {-1.0, 1.0}
        assert algo.retrieval == "target_split"
    if name == "noda":  # continuous DPSH outputs of both domains, source database
        assert algo.retrieval == "source_database"


def test_families_and_target_label_flags() -> None:
    families = {name: algorithm_of(name).family for name in ALGORITHMS}
    assert families == {
        "source_only": "deep", "dan": "deep", "dann": "deep",
        "shallow_source_only": "shallow", "tca": "shallow", "gfk": "shallow", "coral": "shallow", "jda": "shallow",
        "itq": "hashing", "kmh": "hashing", "ba": "hashing", "bdnn": "hashing", "noda": "hashing",
        "suh": "supervised_hashing",
    }
    assert [n for n in ALGORITHMS if algorithm_of(n).uses_target_labels] == ["suh"]


# ----------------------------------------------------------------------------- (b) options / names
def test_check_options_rejects_an_unknown_key_naming_it_and_the_accepted_ones() -> None:
    assert check_options("itq", {"n_iter": 3}) == {"n_iter": 3}
    with pytest.raises(ValueError) as exc:
        check_options("itq", {"n_iter": 3, "learning_rate": 0.1})
    msg = str(exc.value)
    assert "learning_rate" in msg and "itq" in msg
    assert "n_iter" in msg  # an accepted one is listed
    assert "'n_iter'" not in msg.split("accepted")[0]  # ... and is not called unknown
    # the runner's own arguments are not options
    for name in ALGORITHMS:
        assert not {"bits", "seed", "device", "xs", "ys", "xt", "X", "y"} & set(accepted_options(algorithm_of(name)))
    with pytest.raises(ValueError, match="bits"):
        check_options("itq", {"bits": 16})
    with pytest.raises(ValueError, match="nope"):  # run_baseline checks too, before fitting
        run_baseline("coral", *blobs()[:3], C, options={"nope": 1})


def test_algorithm_of_rejects_unknown_names() -> None:
    with pytest.raises(ValueError, match="'dah'") as exc:
        algorithm_of("dah")
    assert "itq" in str(exc.value) and "suh" in str(exc.value)  # lists the known ones
    with pytest.raises(ValueError, match="unknown algorithm"):
        check_options("lsh", {})
    with pytest.raises(ValueError, match="unknown algorithm"):
        run_baseline("lsh", *blobs()[:3], C)


# ----------------------------------------------------------------------------- (c) target labels
def test_run_baseline_takes_no_target_labels_except_suhs_database_part() -> None:
    params = inspect.signature(run_baseline).parameters
    label_like = [p for p in params if p.startswith("y")]
    assert label_like == ["ys", "yt_database"]


def test_suh_reads_only_database_labels_and_trains_on_the_database_part() -> None:
    xs, ys, xt, yt = blobs()
    qi, db = target_query_database_split(N, query_fraction=0.25, seed=0)
    opts = {"epochs": 20, "batch_size": 32, "lr": 1e-2}  # enough training for the labels to matter

    def suh(data):
        return run("suh", data, options=opts).arrays["u_target"]

    base = suh((xs, ys, xt, yt))

    # changing the labels of QUERY items does not change anything SuH is given, nor its codes
    yt2 = yt.copy()
    yt2[qi] = (yt2[qi] + 1) % C
    assert not np.array_equal(yt, yt2)
    same = suh((xs, ys, xt, yt2))
    np.testing.assert_array_equal(base, same)

    # the query items' FEATURES are not trained on either: perturbing them moves only their own codes
    xt3 = xt.copy()
    xt3[qi] = -xt3[qi]
    moved = suh((xs, ys, xt3, yt))
    np.testing.assert_array_equal(base[db], moved[db])
    assert not np.array_equal(base[qi], moved[qi])

    # ... while the database labels ARE used (otherwise the check above would prove nothing)
    yt4 = yt.copy()
    yt4[db] = np.random.default_rng(5).permutation(yt4[db])
    assert not np.array_equal(base, suh((xs, ys, xt, yt4)))


def test_suh_without_database_labels_raises() -> None:
    xs, ys, xt, yt = blobs()
    _, db = target_query_database_split(N, query_fraction=0.25, seed=0)
    for extra in ({}, {"database_idx": db}, {"yt_database": yt[db]}):
        with pytest.raises(ValueError, match="suh needs yt_database and database_idx"):
            run_baseline("suh", xs, ys, xt, C, options=TINY["suh"], bits=BITS, **extra)


@pytest.mark.parametrize("name", ["coral", "itq", "noda"])
def test_da_methods_ignore_target_label_arguments_they_are_not_given(name: str) -> None:
    """A DA / unsupervised method run with and without SuH's label arguments gives the same output:
    the extra arguments are ignored (they never reach the estimator)."""
    xs, ys, xt, yt = blobs()
    plain = run_baseline(name, xs, ys, xt, C, options=TINY[name], bits=BITS).arrays
    rnd = np.random.default_rng(9).integers(0, C, N)
    with_labels = run_baseline(name, xs, ys, xt, C, options=TINY[name], bits=BITS, yt_database=rnd,
                               database_idx=np.arange(N)).arrays
    assert plain.keys() == with_labels.keys()
    for k in plain:
        np.testing.assert_array_equal(plain[k], with_labels[k])


# ----------------------------------------------------------------------------- (d) determinism
@pytest.mark.parametrize("name", ["dan", "itq"])
def test_same_seed_same_arrays(name: str) -> None:
    a, b = run(name), run(name)
    assert a.arrays.keys() == b.arrays.keys()
    for k in a.arrays:
        np.testing.assert_array_equal(a.arrays[k], b.arrays[k])
    if a.history:
        assert a.history == b.history
