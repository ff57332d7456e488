"""Hashing baselines of Table 4 (ITQ, KMH, BA, BDNN, DPSH) and the target query/database split.

Every test runs on a small synthetic toy so the whole file stays within a few tens of seconds on
two cores; each checks a property the original paper's algorithm guarantees or is built for.
"""

from __future__ import annotations


import numpy as np
import pytest
from scipy.stats import spearmanr

from dahash.baselines.ba import BinaryAutoencoder, _penalised_cost, z_step
from dahash.baselines.bdnn import BDNN
from dahash.baselines.dpsh import DPSH, fit_noda, fit_suh
from dahash.baselines.itq import ITQ
from dahash.baselines.kmh import KMeansHashing, affinity_preserving_kmeans, balanced_partition, index_codes
from dahash.eval.split import target_query_database_split
from dahash.eval.metrics import binarize, hamming_distance, mean_average_precision


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def clustered(n: int = 400, f: int = 24, classes: int = 6, spread: float = 3.0, seed: int = 0):
    """Gaussian clusters: ``(X (n, f), y (n,))`` with class centres ``spread`` apart (scale)."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((classes, f)) * spread
    y = rng.integers(0, classes, n)
    return centres[y] + rng.standard_normal((n, f)), y


def assert_codes(codes: np.ndarray, n: int, bits: int) -> None:
    assert codes.shape == (n, bits)
    assert codes.dtype == np.float32
    assert set(np.unique(codes)) <= {-1.0, 1.0}


# ---------------------------------------------------------------------------------------------
# split
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("n, frac, expected_q", [(100, 0.1, 10), (95, 0.1, 10), (7, 0.1, 1), (10, 0.95, 9), (2, 0.5, 1)])
def test_split_disjoint_cover_and_fraction(n: int, frac: float, expected_q: int) -> None:
    q, db = target_query_database_split(n, query_fraction=frac, seed=3)
    assert q.size == expected_q and db.size == n - expected_q
    assert np.intersect1d(q, db).size == 0
    np.testing.assert_array_equal(np.sort(np.concatenate([q, db])), np.arange(n))
    assert np.all(np.diff(q) > 0) and np.all(np.diff(db) > 0)
    assert q.dtype == np.int64 and db.dtype == np.int64


def test_split_deterministic_and_seed_dependent() -> None:
    a = target_query_database_split(1000, seed=7)
    b = target_query_database_split(1000, seed=7)
    c = target_query_database_split(1000, seed=8)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    assert not np.array_equal(a[0], c[0])
    # not a contiguous block: queries are spread over the whole index range
    assert a[0].min() < 200 and a[0].max() > 800


@pytest.mark.parametrize(
    "kwargs, match",
    [({"n": 1}, "n must be"), ({"n": 10, "query_fraction": 0.0}, "query_fraction"),
     ({"n": 10, "query_fraction": 1.0}, "query_fraction"), ({"n": 10.0}, "n must be"),
     ({"n": 10, "seed": 1.5}, "seed")],
)
def test_split_rejects_bad_input(kwargs: dict, match: str) -> None:
    n = kwargs.pop("n")
    with pytest.raises(ValueError, match=match):
        target_query_database_split(n, **kwargs)


# ---------------------------------------------------------------------------------------------
# ITQ
# ---------------------------------------------------------------------------------------------
def test_itq_rotation_orthogonal_loss_monotone_codes_balanced() -> None:
    rng = np.random.default_rng(1)  # correlated, anisotropic Gaussian (no clusters -> balanced bits)
    x = rng.standard_normal((500, 32)) @ rng.standard_normal((32, 32)) + 5.0
    itq = ITQ(16, seed=0).fit(x)
    r = itq.rotation_
    np.testing.assert_allclose(r.T @ r, np.eye(16), atol=1e-10)
    np.testing.assert_allclose(r @ r.T, np.eye(16), atol=1e-10)
    hist = itq.loss_history_
    assert hist.shape == (2 * 50 + 1,)
    assert np.all(np.diff(hist) <= 1e-9 * hist[0]), "quantization loss increased"
    assert hist[-1] < hist[0]
    # the final loss equals ||B - V R||^2 recomputed from the fitted model
    v = (x - itq.mean_) @ itq.components_
    b = itq.encode(x)
    assert np.sum((b - v @ r) ** 2) == pytest.approx(hist[-1], rel=1e-9)
    assert_codes(b, 500, 16)
    assert np.abs(b.mean(axis=0)).max() < 0.2  # each bit splits the centred data roughly in half
    # ITQ beats the unrotated PCA quantization (R = I) on the same projections
    assert hist[-1] < np.sum((np.where(v >= 0, 1.0, -1.0) - v) ** 2)


def test_itq_deterministic_and_validates() -> None:
    x, _ = clustered(n=200, f=16, seed=2)
    np.testing.assert_array_equal(ITQ(8, seed=4).fit(x).encode(x), ITQ(8, seed=4).fit(x).encode(x))
    with pytest.raises(ValueError, match="bits"):
        ITQ(32).fit(x)  # 32 > f = 16
    with pytest.raises(ValueError, match="bits"):
        ITQ(0)
    with pytest.raises(ValueError, match="X"):
        ITQ(4).fit(np.ones(10))
    with pytest.raises(ValueError, match="X"):
        ITQ(4).fit(x).encode(x[:, :5])
    with pytest.raises(RuntimeError, match="not fitted"):
        ITQ(4).encode(x)


# ---------------------------------------------------------------------------------------------
# KMH
# ---------------------------------------------------------------------------------------------
def _pair_stats(centres: np.ndarray, b: int) -> tuple[np.ndarray, np.ndarray]:
    codes = index_codes(b)
    ham = (codes[:, None, :] != codes[None, :, :]).sum(axis=2)
    dist = np.linalg.norm(centres[:, None, :] - centres[None, :, :], axis=2)
    iu = np.triu_indices(2**b, 1)
    return ham[iu], dist[iu]


def test_kmh_hamming_tracks_centre_distances() -> None:
    x, _ = clustered(n=600, f=16, classes=12, seed=3)
    kmh = KMeansHashing(8, bits_per_subspace=4, n_iter=10).fit(x)
    assert kmh.n_subspaces == 2 and len(kmh.centers_) == 2
    codes = kmh.encode(x)
    assert_codes(codes, 600, 8)
    for centres, hist in zip(kmh.centers_, kmh.history_):
        assert centres.shape == (16, 8)
        ham, dist = _pair_stats(centres, 4)
        assert spearmanr(ham, dist).statistic > 0.5
        assert hist[-1] < hist[0]  # the alternating optimisation lowers E_quan + w E_aff
    # encoding = binary representation of the nearest codeword index per subspace
    idx = kmh.assign(x)
    np.testing.assert_array_equal(codes[:, :4], index_codes(4)[idx[:, 0]])
    np.testing.assert_array_equal(codes[:, 4:], index_codes(4)[idx[:, 1]])


def test_kmh_affinity_term_preserves_distances_better_than_plain_kmeans() -> None:
    """With w = 0 the update is plain k-means; the affinity term must give a lower affinity error
    sum n_i n_j / n^2 (d_ij - d_h(i, j))^2 between centre and Hamming-based distances."""
    rng = np.random.default_rng(5)
    x = rng.standard_normal((800, 6)) * np.array([3.0, 2.5, 2.0, 1.5, 1.0, 0.5])

    def affinity_error(weight: float) -> float:
        centres, scale, _ = affinity_preserving_kmeans(x, 3, n_iter=15, weight=weight, max_inner_iter=50)
        idx = np.argmin(((x[:, None, :] - centres[None]) ** 2).sum(-1), axis=1)
        counts = np.bincount(idx, minlength=8) / x.shape[0]
        codes = index_codes(3)
        dh = 2 * scale * np.sqrt((codes[:, None, :] != codes[None, :, :]).sum(-1))
        d = np.linalg.norm(centres[:, None] - centres[None], axis=2)
        return float(np.sum(np.outer(counts, counts) * (d - dh) ** 2))

    assert affinity_error(10.0) < 0.5 * affinity_error(0.0)


def test_kmh_balanced_partition_matches_authors_rule() -> None:
    groups = balanced_partition(np.array([8.0, 4.0, 2.0, 1.0]), 2)
    # axis 0 -> s0; then s1 (smaller sum) gets axis 1; s1 sum (log4) < s0 sum (log8) -> axis 2 to s1,
    # s1 full -> axis 3 to s0
    assert [g.tolist() for g in groups] == [[0, 3], [1, 2]]
    with pytest.raises(ValueError, match="divisible"):
        balanced_partition(np.ones(5), 2)


def test_kmh_validates() -> None:
    with pytest.raises(ValueError, match="multiple of bits_per_subspace"):
        KMeansHashing(10, bits_per_subspace=4)
    x, _ = clustered(n=100, f=6, seed=0)
    with pytest.raises(ValueError, match="subspaces needs"):
        KMeansHashing(16, bits_per_subspace=4).fit(x)  # 4 subspaces of 6 // 4 = 1 dim < b


# ---------------------------------------------------------------------------------------------
# BA
# ---------------------------------------------------------------------------------------------
def test_ba_z_step_enumeration_is_optimal_and_bitwise_is_a_local_minimum() -> None:
    rng = np.random.default_rng(0)
    xc = rng.standard_normal((150, 12))
    A, c = rng.standard_normal((12, 6)), rng.standard_normal(12) * 0.1
    h = np.where(rng.standard_normal((150, 6)) >= 0, 1.0, -1.0)
    mu = 0.7
    z_enum = z_step(xc, A, c, h, mu, max_enum_bits=6)
    z_alt = z_step(xc, A, c, h, mu, max_enum_bits=0)
    cost_enum = _penalised_cost(xc, z_enum, A, c, h, mu)
    cost_alt = _penalised_cost(xc, z_alt, A, c, h, mu)
    assert np.all(cost_enum <= cost_alt + 1e-9)
    assert np.all(cost_alt <= _penalised_cost(xc, h, A, c, h, mu) + 1e-9)  # never worse than z = h(x)
    for l in range(6):  # no single bit flip improves the bitwise solution
        flipped = z_alt.copy()
        flipped[:, l] *= -1
        assert np.all(_penalised_cost(xc, flipped, A, c, h, mu) >= cost_alt - 1e-9)


def test_ba_reconstruction_not_worse_than_itq_init() -> None:
    x, _ = clustered(n=500, f=24, classes=8, seed=4)
    ba = BinaryAutoencoder(12, n_mu=8, seed=0).fit(x)
    assert ba.train_error_ <= ba.init_error_
    assert ba.train_error_ < 0.99 * ba.init_error_  # MAC actually improves on ITQ here
    codes = ba.encode(x)
    assert_codes(codes, 500, 12)
    # the reported error is the real reconstruction error of the final codes
    assert np.sum((x - ba.reconstruct(x)) ** 2) == pytest.approx(ba.train_error_, rel=1e-6)
    assert ba.history_ and all(np.isfinite(h["e_q"]) for h in ba.history_)


# ---------------------------------------------------------------------------------------------
# BDNN
# ---------------------------------------------------------------------------------------------
def test_bdnn_outputs_become_binary_and_balanced() -> None:
    x, _ = clustered(n=300, f=24, seed=6)
    x = x + 4.0  # an offset the network must not turn into unbalanced bits
    model = BDNN(12, hidden_dims=(32,), outer_iter=3, inner_iter=20, seed=0).fit(x)
    init, final = model.init_stats_, model.final_stats_
    assert final["binary_gap"] < 0.5 * init["binary_gap"]  # |u| close to 1
    assert final["balance"] < 0.5 * init["balance"]  # per-bit mean near 0
    assert final["balance"] < 0.1
    totals = [h["total"] for h in model.history_]
    assert totals[-1] < totals[0]
    u = model.project(x)
    assert float(np.mean(np.abs(np.abs(u) - 1.0))) == pytest.approx(final["binary_gap"], rel=1e-4)
    assert_codes(model.encode(x), 300, 12)
    with pytest.raises(ValueError, match="hidden_dims"):
        BDNN(8, hidden_dims=())


# ---------------------------------------------------------------------------------------------
# DPSH
# ---------------------------------------------------------------------------------------------
def test_dpsh_separates_classes_and_beats_random_codes() -> None:
    x, y = clustered(n=600, f=32, classes=5, spread=1.2, seed=7)
    xq, yq = x[:100], y[:100]
    xd, yd = x[100:], y[100:]
    model = DPSH(16, epochs=25, batch_size=64, seed=0).fit(xd, yd)
    assert model.history_[-1] < model.history_[0]
    bq, bd = binarize(model.encode(xq)), binarize(model.encode(xd))
    dist = hamming_distance(bq, bd)
    same = yq[:, None] == yd[None, :]
    assert dist[same].mean() + 3.0 < dist[~same].mean()
    learned = mean_average_precision(bq, bd, yq, yd).map
    rng = np.random.default_rng(0)
    random_map = mean_average_precision(rng.integers(0, 2, bq.shape), rng.integers(0, 2, bd.shape), yq, yd).map
    assert learned > 0.9 and learned > random_map + 0.4


def test_dpsh_noda_and_suh_helpers_and_validation() -> None:
    x, y = clustered(n=200, f=16, classes=3, seed=8)
    a = fit_noda(x, y, 8, epochs=2, seed=1)
    b = fit_suh(x, y, 8, epochs=2, seed=1)
    np.testing.assert_array_equal(a.encode(x), b.encode(x))  # same training data + seed -> same model
    assert_codes(a.encode(x), 200, 8)
    with pytest.raises(ValueError, match="y is required"):
        DPSH(8).fit(x, None)
    with pytest.raises(ValueError, match="y must"):
        DPSH(8).fit(x, y.astype(float))
    with pytest.raises(ValueError, match="optimizer"):
        DPSH(8, optimizer="lbfgs")  # type: ignore[arg-type]


def test_kmh_jit_objective_matches_numpy_reference() -> None:
    # the fit's numba E_j(c) and gradient = the numpy formula (kmh._center_cost_and_grad), to rounding;
    # and the gradient is the derivative of the cost (central differences)
    from dahash.baselines._kmh_kernel import center_cost_and_grad
    from dahash.baselines.kmh import _center_cost_and_grad

    rng = np.random.default_rng(3)
    k, d, n = 16, 7, 200
    centers, c, sum_j = rng.normal(size=(k, d)), rng.normal(size=d), rng.normal(size=d) * 10
    counts = rng.integers(0, 30, size=k).astype(np.float64)
    dh_j = rng.uniform(0, 3, size=k)
    for j in (0, 5, 15):
        f_ref, g_ref = _center_cost_and_grad(c, j, sum_j, counts, n, centers, dh_j, 10.0)
        f_jit, g_jit = center_cost_and_grad(c, j, sum_j, counts, n, centers, dh_j, 10.0)
        assert f_jit == pytest.approx(f_ref, rel=1e-13)
        np.testing.assert_allclose(g_jit, g_ref, rtol=1e-12, atol=1e-14)
        h = 1e-6
        num = [(center_cost_and_grad(c + h * e, j, sum_j, counts, n, centers, dh_j, 10.0)[0]
                - center_cost_and_grad(c - h * e, j, sum_j, counts, n, centers, dh_j, 10.0)[0]) / (2 * h)
               for e in np.eye(d)]
        np.testing.assert_allclose(g_jit, num, rtol=1e-5, atol=1e-7)


# ---------------------------------------------------------------------------------------------
# BA's encoder step: the batched finite Newton solver against liblinear (sklearn.svm.LinearSVC)
# ---------------------------------------------------------------------------------------------
def _svm_data(n: int, d: int, seed: int, L: int = 5):
    """``X (n, d)`` and ``L`` label vectors: some linearly realisable with noise (overlapping classes), some
    random (far from separable)."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d)) * np.linspace(3.0, 0.3, d)
    Y = np.where(X @ rng.standard_normal((d, L)) + 0.8 * rng.standard_normal((n, L)) + 0.3 >= 0, 1.0, -1.0)
    Y[:, -1] = np.where(rng.random(n) < 0.5, 1.0, -1.0)
    return X, Y.T


def _primal_gradient(X: np.ndarray, y: np.ndarray, wt: np.ndarray, C: float) -> np.ndarray:
    """Gradient of ``1/2 ||w~||^2 + C sum max(0, 1 - y x~.w~)^2`` at ``w~ = [w, b]`` (written out here, not
    taken from the solver)."""
    xt = np.hstack([X, np.ones((len(X), 1))])
    m = np.maximum(0.0, 1.0 - y * (xt @ wt))
    return wt - 2.0 * C * xt.T @ (m * y)


@pytest.mark.parametrize("form", ["sample", "feature"])
@pytest.mark.parametrize("n, d", [(60, 150), (300, 12)])
@pytest.mark.parametrize("C", [0.05, 1.0])
def test_l2svm_newton_reaches_liblinears_optimum(form: str, n: int, d: int, C: float) -> None:
    from sklearn.svm import LinearSVC

    from dahash.baselines._l2svm import L2SVMProblem, primal_objective

    X, Y = _svm_data(n, d, seed=n + d)
    problem = L2SVMProblem(X, C, form=form)
    assert problem.sample_form == (form == "sample")
    assert L2SVMProblem(X, C).sample_form  # "auto": the sample form up to 5,000 points
    wt, n_iter = problem.solve(Y)
    assert np.all(n_iter < 100)
    for l, y in enumerate(Y):
        # the oracle: liblinear on the same objective, run to a tight tolerance
        svm = LinearSVC(C=C, loss="squared_hinge", dual=True, tol=1e-10, max_iter=200_000, random_state=0).fit(X, y)
        p_ref = primal_objective(X, y, svm.coef_[0], svm.intercept_[0], C)
        p_new = primal_objective(X, y, wt[l, :-1], wt[l, -1], C)
        assert p_new <= p_ref * (1 + 1e-12)  # never worse than liblinear
        assert p_new == pytest.approx(p_ref, rel=1e-8)
        np.testing.assert_allclose(wt[l, :-1], svm.coef_[0], rtol=0, atol=1e-4 * np.abs(svm.coef_).max())
        assert wt[l, -1] == pytest.approx(svm.intercept_[0], abs=1e-4 * max(1.0, abs(svm.intercept_[0])))
        grad = _primal_gradient(X, y, wt[l], C)
        assert np.abs(grad).max() <= 1e-8 * max(1.0, np.abs(wt[l]).max())  # stationary: the minimiser
        codes_ref = np.sign(svm.decision_function(X))
        assert np.mean(np.sign(X @ wt[l, :-1] + wt[l, -1]) == codes_ref) >= 0.99
    # strictly convex: any start (here random directions, scaled along their rays) ends at the same point
    wt2, _ = problem.solve(Y, np.random.default_rng(1).standard_normal(wt.shape))
    np.testing.assert_allclose(wt2, wt, rtol=1e-7, atol=1e-9 * np.abs(wt).max())


def test_l2svm_exact_line_search_minimises_along_the_segment() -> None:
    # phi(t) = P(w~ + t d) minimised by brute force on a fine grid (an independent oracle)
    from dahash.baselines._l2svm import _exact_line_search

    rng = np.random.default_rng(5)
    X, Y = _svm_data(80, 6, seed=5)
    xt = np.hstack([X, np.ones((80, 1))])
    C = 0.7
    for trial in range(6):
        y = Y[trial % len(Y)]
        w, step = rng.standard_normal(7), rng.standard_normal(7)
        f, delta = xt @ w, xt @ step
        slope = w @ step - 2 * C * np.sum(np.maximum(0, 1 - y * f) * y * delta)  # phi'(0)
        if slope >= 0:  # make it a descent direction
            step, delta = -step, -delta
        t = _exact_line_search(f, delta, y, float(w @ step), float(step @ step), C)
        grid = np.append(np.linspace(0, max(4 * t, 1.0), 40001), t)  # (G,): phi on all of them at once

        def phi(ts: np.ndarray) -> np.ndarray:
            hinge = np.maximum(0, 1 - y * (f[None, :] + ts[:, None] * delta[None, :]))
            return 0.5 * np.sum((w[None, :] + ts[:, None] * step[None, :]) ** 2, axis=1) + C * np.sum(hinge**2, axis=1)

        vals = phi(grid)
        grid, vals, at_t = grid[:-1], vals[:-1], vals[-1]
        assert 0 < t
        assert at_t <= vals.min() + 1e-9 * abs(vals.min())
        assert t == pytest.approx(grid[np.argmin(vals)], abs=2 * (grid[1] - grid[0]))


def test_ba_newton_encoder_matches_the_liblinear_path() -> None:
    # the whole MAC fit with the Newton h step vs the previous LinearSVC h step, on a small problem
    x, _ = clustered(n=300, f=40, classes=8, seed=11)
    new = BinaryAutoencoder(16, n_mu=6, seed=0).fit(x)
    old = BinaryAutoencoder(16, n_mu=6, seed=0, svm_solver="liblinear").fit(x)
    assert new.svm_solver == "newton"
    same = np.mean(new.encode(x) == old.encode(x))
    assert same >= 0.99
    assert new.train_error_ == pytest.approx(old.train_error_, rel=1e-3)
    assert new.n_iter_ == old.n_iter_
    with pytest.raises(ValueError, match="svm_solver"):
        BinaryAutoencoder(8, svm_solver="sgd")


# ---------------------------------------------------------------------------------------------
# KMH's numba L-BFGS, PCA and cell sums against the previous (scipy / numpy) implementations
# ---------------------------------------------------------------------------------------------
def test_kmh_numba_lbfgs_reaches_scipys_minimum() -> None:
    import scipy.optimize

    from dahash.baselines._kmh_kernel import center_cost_and_grad, minimize_center

    rng = np.random.default_rng(8)
    x, _ = clustered(n=400, f=70, classes=16, seed=8)
    for trial in range(6):
        k, d, n = 16, 70, 400
        centers = x[rng.choice(n, k, replace=False)] + 0.1 * rng.standard_normal((k, d))
        counts = rng.integers(1, 50, size=k).astype(np.float64)
        j = trial % k
        sum_j = counts[j] * (centers[j] + 0.5 * rng.standard_normal(d))
        dh_j = np.sqrt(np.sum((centers - centers[j]) ** 2, axis=1)) * rng.uniform(0.7, 1.3, size=k)
        args = (j, sum_j, counts, n, centers, dh_j, 10.0)
        c, f, f0 = minimize_center(centers[j].copy(), *args, 100)
        assert f0 == pytest.approx(center_cost_and_grad(centers[j], *args)[0], rel=1e-14)
        assert f <= f0
        assert f == pytest.approx(center_cost_and_grad(c, *args)[0], rel=1e-14)
        ref = scipy.optimize.minimize(center_cost_and_grad, centers[j].copy(), args=args, jac=True,
                                      method="L-BFGS-B", options={"maxiter": 100})
        assert f == pytest.approx(ref.fun, rel=1e-6, abs=1e-9)
        assert np.abs(center_cost_and_grad(c, *args)[1]).max() <= 1e-4  # (nearly) stationary


def test_kmh_lbfgs_fit_matches_the_scipy_path() -> None:
    x, _ = clustered(n=500, f=40, classes=8, seed=9)
    new = KMeansHashing(16, bits_per_subspace=4, n_iter=15).fit(x)
    old = KMeansHashing(16, bits_per_subspace=4, n_iter=15, optimizer="scipy").fit(x)
    assert new.optimizer == "lbfgs"
    assert np.mean(new.encode(x) == old.encode(x)) >= 0.98
    for h_new, h_old in zip(new.history_, old.history_):
        assert h_new[0] == h_old[0]  # same initialisation
        assert h_new[-1] == pytest.approx(h_old[-1], rel=1e-3)
    with pytest.raises(ValueError, match="optimizer"):
        KMeansHashing(16, optimizer="bfgs")


def test_kmh_pca_and_cell_sums_match_the_previous_numpy_versions() -> None:
    from dahash.baselines.itq import pca_top
    from dahash.baselines.kmh import _cell_sums, pca_all_eigh

    rng = np.random.default_rng(10)
    x = rng.standard_normal((90, 120)) * np.linspace(5.0, 0.1, 120)  # n < f, as on Office-Caltech
    xc = x - x.mean(axis=0)
    comps_ref, vals_ref = pca_top(xc, 80)
    comps, vals = pca_all_eigh(xc, 80)
    np.testing.assert_allclose(vals, vals_ref, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(comps, comps_ref, atol=1e-8)  # same signs (largest entry positive)
    idx = rng.integers(0, 16, 90)
    idx[idx == 3] = 4  # an empty cell
    ref = np.zeros((16, 120))
    np.add.at(ref, idx, x)
    assert np.array_equal(_cell_sums(x, idx, 16), ref)
