"""Behavioural tests of the shallow DA baselines (dahash.baselines: TCA, GFK, CORAL, JDA, SourceOnly).

Synthetic domains: 3 Gaussian classes in 20-d, class means on a triangle in the plane S = span(e0, e1),
unit isotropic noise, everything scaled by 5. Two kinds of shift, each the textbook case of the methods
it is used for:

* ``"subspace"`` (TCA, GFK, JDA vs SourceOnly-1NN): the target is the source distribution rotated --
  the class plane S is tilted by 1.2 rad towards span(e2, e3) -- and translated along the noise
  dimensions. 1-NN on raw features suffers from both; TCA/JDA cancel the mean difference and keep the
  shared high-variance directions, GFK measures distances in the subspaces between S and the tilted one.
* ``"covariance"`` (CORAL vs SourceOnly-SVM): the target's class plane is stretched by 4 along one axis
  and shrunk by 4 along the other (a symmetric linear map, no translation); CORAL's re-colouring undoes
  exactly such a second-order shift (the source scatter in S is isotropic). CORAL keeps means as they are,
  so it is not expected to handle the translation/rotation shift, and JDA's class-conditional matching is
  not meant for a class-dependent distortion of the discriminative plane.

Margins were checked over seeds 0..7 (smallest margin: TCA 0.22, GFK 0.22, JDA 0.19 on "subspace";
CORAL 0.08 on "covariance"); the asserts use fixed seeds and smaller margins.
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg

from dahash.baselines import CORAL, GFK, JDA, TCA, SourceOnly
from dahash.baselines.coral import coral_transform_matrix
from dahash.baselines.gfk import geodesic_flow, geodesic_flow_kernel, pca_subspace, principal_angles
from dahash.baselines.jda import jda_mmd_factor
from dahash.baselines.source_only import nearest_neighbour_predict
from dahash.baselines.tca import kernel_matrix, mmd_matrix_factor, transfer_components

D = 20


def two_domains(seed: int, kind: str, n_per: int = 60
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(Xs, ys, Xt, yt)``: 3 classes x ``n_per`` points per domain, 20-d (see the module docstring)."""
    rng = np.random.default_rng(seed)
    radius = 4.0 if kind == "subspace" else 2.5
    ang = np.pi / 2 + np.arange(3) * 2 * np.pi / 3  # equilateral: isotropic class scatter in S
    means = np.zeros((3, D))
    means[:, :2] = radius * np.c_[np.cos(ang), np.sin(ang)]

    def sample() -> tuple[np.ndarray, np.ndarray]:
        y = np.repeat(np.arange(3), n_per)
        return means[y] + rng.normal(size=(y.size, D)), y

    Xs, ys = sample()
    Xt, yt = sample()
    if kind == "subspace":
        R = np.eye(D)
        c, s = np.cos(1.2), np.sin(1.2)
        for i, j in ((0, 2), (1, 3)):  # tilt S towards span(e2, e3)
            R[i, i] = R[j, j] = c
            R[i, j], R[j, i] = s, -s
        Xt = Xt @ R
        v = rng.normal(size=D - 4)
        Xt[:, 4:] += 10.0 * v / np.linalg.norm(v)
    elif kind == "covariance":
        u, w = np.array([np.cos(0.5), np.sin(0.5)]), np.array([-np.sin(0.5), np.cos(0.5)])
        Xt[:, :2] = Xt[:, :2] @ (4.0 * np.outer(u, u) + 0.25 * np.outer(w, w))
    else:
        raise AssertionError(kind)
    return 5.0 * Xs, ys, 5.0 * Xt, yt


def accuracy(model, Xs, ys, Xt, yt) -> float:
    return float(np.mean(model.fit(Xs, ys, Xt).predict(Xt) == yt))


def normalised_mmd(Zs: np.ndarray, Zt: np.ndarray) -> float:
    """Linear-kernel MMD^2 ``||mean Zs - mean Zt||^2`` over the pooled variance (scale-free)."""
    Z = np.vstack([Zs, Zt])
    return float(np.sum((Zs.mean(0) - Zt.mean(0)) ** 2) / np.mean(np.sum((Z - Z.mean(0)) ** 2, axis=1)))


# ---------------------------------------------------------------------------------------------
# adaptation beats no adaptation
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("seed", [0, 1])
def test_subspace_methods_beat_source_only_1nn(seed: int) -> None:
    Xs, ys, Xt, yt = two_domains(seed, "subspace")
    base = accuracy(SourceOnly("1nn"), Xs, ys, Xt, yt)
    assert base < 0.8  # the shift really hurts
    for model in (TCA(dim=2), GFK(dim=2), JDA(dim=2, n_iter=5)):
        acc = accuracy(model, Xs, ys, Xt, yt)
        assert acc >= base + 0.15, (type(model).__name__, acc, base)


@pytest.mark.parametrize("seed", [0, 1])
def test_coral_beats_source_only_svm(seed: int) -> None:
    Xs, ys, Xt, yt = two_domains(seed, "covariance")
    base = accuracy(SourceOnly("svm"), Xs, ys, Xt, yt)
    acc = accuracy(CORAL(), Xs, ys, Xt, yt)
    assert acc >= base + 0.05, (acc, base)
    assert acc >= 0.85


def test_source_only_matches_in_domain_when_there_is_no_shift() -> None:
    Xs, ys, _, _ = two_domains(0, "subspace")
    Xs2, ys2, _, _ = two_domains(1, "subspace")  # same distribution, fresh draw
    assert accuracy(SourceOnly("1nn"), Xs, ys, Xs2, ys2) > 0.9
    assert accuracy(SourceOnly("svm"), Xs, ys, Xs2, ys2) > 0.9


# ---------------------------------------------------------------------------------------------
# TCA / JDA
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("make", [lambda: TCA(dim=2), lambda: TCA(dim=2, kernel="rbf"),
                                  lambda: JDA(dim=2, n_iter=3)])
def test_tca_jda_reduce_mmd(make) -> None:
    Xs, ys, Xt, _ = two_domains(0, "subspace")
    raw = normalised_mmd(Xs, Xt)
    model = make().fit(Xs, ys, Xt)
    emb = normalised_mmd(model.transform(Xs), model.transform(Xt))
    assert raw > 0.5
    assert emb < 0.1 * raw, (raw, emb)


def test_tca_transform_reproduces_fitted_embedding() -> None:
    Xs, ys, Xt, _ = two_domains(0, "subspace")
    for model in (TCA(dim=3), TCA(dim=3, kernel="rbf", normalize=True)):
        model.fit(Xs, ys, Xt)
        np.testing.assert_allclose(model.transform(Xs), model.Zs_, atol=1e-8)
        np.testing.assert_allclose(model.transform(Xt), model.Zt_, atol=1e-8)


def test_transfer_components_solve_the_generalised_eigenproblem() -> None:
    rng = np.random.default_rng(3)
    X = rng.normal(size=(30, 6))
    K = kernel_matrix(X, X, "linear")
    e = mmd_matrix_factor(12, 18)
    W = transfer_components(K, e, mu=0.5, dim=4)
    n = 30
    H = np.eye(n) - np.ones((n, n)) / n
    A, B = K @ H @ K, K @ np.outer(e, e) @ K + 0.5 * np.eye(n)
    lam = np.diag(W.T @ A @ W)
    np.testing.assert_allclose(A @ W, B @ W * lam, atol=1e-8 * np.abs(A).max())
    np.testing.assert_allclose(W.T @ B @ W, np.eye(4), atol=1e-8)
    assert np.all(np.diff(lam) <= 1e-12)  # largest first
    # they are the largest eigenvalues of the whole problem
    assert lam[-1] >= scipy.linalg.eigh(A, B, eigvals_only=True)[-4] - 1e-8


def test_mmd_matrix_is_the_empirical_mmd() -> None:
    rng = np.random.default_rng(0)
    Xs, Xt = rng.normal(size=(7, 3)), rng.normal(size=(5, 3)) + 1.0
    X = np.vstack([Xs, Xt])
    e = mmd_matrix_factor(7, 5)
    np.testing.assert_allclose(e @ (X @ X.T) @ e, np.sum((Xs.mean(0) - Xt.mean(0)) ** 2))


def test_jda_mmd_factor_matches_paper_definition() -> None:
    ys = np.array([0, 0, 1, 2, 2])
    yt = np.array([0, 1, 1, 0])  # pseudo-labels: class 2 absent in the target -> no M_2
    E = jda_mmd_factor(ys, yt, np.array([0, 1, 2]))
    ns, nt, n = 5, 4, 9
    M = np.zeros((n, n))
    src, tgt = np.arange(ns), ns + np.arange(nt)
    M[np.ix_(src, src)] = 1 / ns**2
    M[np.ix_(tgt, tgt)] = 1 / nt**2
    M[np.ix_(src, tgt)] = M[np.ix_(tgt, src)] = -1 / (ns * nt)
    for c in (0, 1):
        s_c, t_c = src[ys == c], tgt[yt == c]
        Mc = np.zeros((n, n))
        Mc[np.ix_(s_c, s_c)] = 1 / len(s_c) ** 2
        Mc[np.ix_(t_c, t_c)] = 1 / len(t_c) ** 2
        Mc[np.ix_(s_c, t_c)] = Mc[np.ix_(t_c, s_c)] = -1 / (len(s_c) * len(t_c))
        M += Mc
    assert E.shape == (n, 3)
    np.testing.assert_allclose(E @ E.T, M, atol=1e-12)


def test_jda_single_pass_is_tca() -> None:
    """T = 1 has no pseudo-labels: it is TCA (M normalised by ||e e^T||_F = ||e||^2, so mu = lam ||e||^2)."""
    Xs, ys, Xt, _ = two_domains(2, "subspace")
    jda = JDA(dim=3, lam=1.0, n_iter=1).fit(Xs, ys, Xt)
    e2 = 1 / len(Xs) + 1 / len(Xt)
    tca = TCA(dim=3, mu=1.0 * e2, normalize=True).fit(Xs, ys, Xt)
    np.testing.assert_array_equal(jda.predict(Xt), tca.predict(Xt))
    np.testing.assert_allclose(np.abs(jda.transform(Xt)), np.abs(tca.transform(Xt)), atol=1e-6)


def test_jda_pseudo_labels_come_from_the_classifier() -> None:
    Xs, ys, Xt, yt = two_domains(0, "subspace")
    jda = JDA(dim=2, n_iter=4).fit(Xs, ys, Xt)
    assert len(jda.pseudo_history_) == 4
    # the final pseudo-labels are 1-NN predictions in the last pass's embedding ...
    np.testing.assert_array_equal(jda.pseudo_labels_, nearest_neighbour_predict(jda.Zs_, ys, jda.Zt_))
    # ... and the model's target predictions are exactly those (fit never sees yt)
    np.testing.assert_array_equal(jda.predict(Xt), jda.pseudo_labels_)
    assert np.mean(jda.pseudo_labels_ == yt) > 0.8


# ---------------------------------------------------------------------------------------------
# GFK
# ---------------------------------------------------------------------------------------------
def _random_basis(rng: np.random.Generator, D: int, d: int) -> np.ndarray:
    return np.linalg.qr(rng.normal(size=(D, d)))[0]


def test_gfk_kernel_is_symmetric_psd() -> None:
    Xs, ys, Xt, _ = two_domains(0, "subspace")
    G = GFK(dim=5).fit(Xs, ys, Xt).G_
    assert G.shape == (D, D)
    np.testing.assert_allclose(G, G.T, atol=1e-12)
    assert np.linalg.eigvalsh(G).min() >= -1e-8
    rng = np.random.default_rng(1)
    for d in (1, 3, 6):
        G = geodesic_flow_kernel(_random_basis(rng, 12, d), _random_basis(rng, 12, d))
        np.testing.assert_allclose(G, G.T, atol=1e-12)
        assert np.linalg.eigvalsh(G).min() >= -1e-8


def test_gfk_matches_paper_closed_form_with_explicit_complement() -> None:
    """Independent evaluation of the paper's eq.: [Ps U1, Rs U2] Lambda [..]^T with Rs = null(Ps^T)."""
    rng = np.random.default_rng(4)
    Dim, d = 10, 3
    Ps, Pt = _random_basis(rng, Dim, d), _random_basis(rng, Dim, d)
    Rs = scipy.linalg.null_space(Ps.T)
    U1, gam, Vt = np.linalg.svd(Ps.T @ Pt)
    theta = np.arccos(np.clip(gam, -1, 1))
    U2 = -(Rs.T @ Pt @ Vt.T) / np.sin(theta)  # Rs^T Pt = -U2 Sigma V^T
    l1 = 1 + np.sin(2 * theta) / (2 * theta)
    l2 = (np.cos(2 * theta) - 1) / (2 * theta)
    l3 = 1 - np.sin(2 * theta) / (2 * theta)
    Omega = np.hstack([Ps @ U1, Rs @ U2])
    Lam = np.block([[np.diag(l1), np.diag(l2)], [np.diag(l2), np.diag(l3)]])
    np.testing.assert_allclose(geodesic_flow_kernel(Ps, Pt), Omega @ Lam @ Omega.T, atol=1e-10)
    np.testing.assert_allclose(principal_angles(Ps, Pt), np.sort(theta), atol=1e-10)
    np.testing.assert_allclose(principal_angles(Ps, Pt), np.sort(scipy.linalg.subspace_angles(Ps, Pt)),
                               atol=1e-10)


def test_gfk_is_twice_the_integral_of_the_geodesic_projections() -> None:
    rng = np.random.default_rng(5)
    Ps, Pt = _random_basis(rng, 9, 3), _random_basis(rng, 9, 3)
    t, w = np.polynomial.legendre.leggauss(40)
    t, w = 0.5 * (t + 1), 0.5 * w  # Gauss-Legendre on [0, 1]
    integral = sum(wi * geodesic_flow(Ps, Pt, ti) @ geodesic_flow(Ps, Pt, ti).T for ti, wi in zip(t, w))
    np.testing.assert_allclose(geodesic_flow_kernel(Ps, Pt), 2 * integral, atol=1e-10)
    # endpoints of the flow span the two subspaces; columns stay orthonormal
    for ti, P in ((0.0, Ps), (1.0, Pt)):
        Phi = geodesic_flow(Ps, Pt, ti)
        np.testing.assert_allclose(Phi @ Phi.T, P @ P.T, atol=1e-10)
    Phi = geodesic_flow(Ps, Pt, 0.37)
    np.testing.assert_allclose(Phi.T @ Phi, np.eye(3), atol=1e-10)


def test_gfk_handles_singular_angles() -> None:
    rng = np.random.default_rng(6)
    P = _random_basis(rng, 8, 3)
    # identical subspaces: every theta = 0 (0/0 in the raw formula); the limit is G = 2 P P^T
    G = geodesic_flow_kernel(P, P @ np.linalg.qr(rng.normal(size=(3, 3)))[0])
    assert np.all(np.isfinite(G))
    np.testing.assert_allclose(G, 2 * P @ P.T, atol=1e-10)
    # a shared direction plus tiny and right angles: finite, PSD, and continuous in the angle
    Q = np.linalg.qr(rng.normal(size=(8, 8)))[0]
    Ps = Q[:, :3]
    for eps in (0.0, 1e-9, 1e-5):
        Pt = np.c_[Q[:, 0], np.cos(eps) * Q[:, 1] + np.sin(eps) * Q[:, 3], Q[:, 4]]  # angles 0, eps, pi/2
        G = geodesic_flow_kernel(Ps, Pt)
        assert np.all(np.isfinite(G))
        assert np.linalg.eigvalsh(G).min() >= -1e-8
        np.testing.assert_allclose(np.sort(principal_angles(Ps, Pt)), [0, eps, np.pi / 2], atol=1e-12)
    G0 = geodesic_flow_kernel(Ps, np.c_[Q[:, 0], Q[:, 1], Q[:, 4]])
    np.testing.assert_allclose(G, G0, atol=1e-4)


def test_gfk_transform_gives_the_gfk_distance() -> None:
    Xs, ys, Xt, _ = two_domains(0, "subspace")
    gfk = GFK(dim=4).fit(Xs, ys, Xt)
    x, y = Xs[:5], Xt[:5]
    d_emb = np.sum((gfk.transform(x) - gfk.transform(y)) ** 2, axis=1)
    d_gfk = np.einsum("ij,jk,ik->i", x - y, gfk.G_, x - y)
    np.testing.assert_allclose(d_emb, d_gfk, rtol=1e-9)
    np.testing.assert_allclose(gfk.Ps_.T @ gfk.Ps_, np.eye(4), atol=1e-10)
    np.testing.assert_allclose(gfk.Ps_ @ gfk.Ps_.T, pca_subspace(Xs, 4) @ pca_subspace(Xs, 4).T)


# ---------------------------------------------------------------------------------------------
# CORAL
# ---------------------------------------------------------------------------------------------
def test_coral_matches_target_covariance() -> None:
    Xs, ys, Xt, _ = two_domains(0, "covariance")
    Ct = np.cov(Xt, rowvar=False)
    rel = lambda C: np.linalg.norm(C - Ct) / np.linalg.norm(Ct)  # noqa: E731
    raw = rel(np.cov(Xs, rowvar=False))
    coral = CORAL().fit(Xs, ys, Xt)  # eps = 1, the paper's setting (features have variance ~25)
    assert raw > 0.5
    assert rel(np.cov(coral.transform(Xs), rowvar=False)) < 0.05
    # with a vanishing regulariser the match is exact: A^T Cs A = Ct
    A = coral_transform_matrix(Xs, Xt, eps=1e-10)
    assert rel(np.cov(Xs @ A, rowvar=False)) < 1e-8
    # and with eps the exact identity is (Cs + eps I) -> (Ct + eps I)
    A1 = coral_transform_matrix(Xs, Xt, eps=1.0)
    Cs1 = np.cov(Xs, rowvar=False) + np.eye(D)
    np.testing.assert_allclose(A1.T @ Cs1 @ A1, Ct + np.eye(D), rtol=1e-8, atol=1e-8)


def test_coral_predicts_target_unchanged() -> None:
    Xs, ys, Xt, _ = two_domains(1, "covariance")
    coral = CORAL().fit(Xs, ys, Xt)
    np.testing.assert_array_equal(coral.predict(Xt), coral.svm_.predict(Xt))


# ---------------------------------------------------------------------------------------------
# API: shapes and bad input
# ---------------------------------------------------------------------------------------------
ALL = [
    ("source_only_1nn", lambda: SourceOnly("1nn"), D),
    ("source_only_svm", lambda: SourceOnly("svm"), D),
    ("tca", lambda: TCA(dim=4), 4),
    ("tca_rbf", lambda: TCA(dim=4, kernel="rbf"), 4),
    ("gfk", lambda: GFK(dim=3), 6),
    ("coral", lambda: CORAL(), D),
    ("jda", lambda: JDA(dim=4, n_iter=2), 4),
]


@pytest.mark.parametrize(("name", "make", "k"), ALL, ids=[a[0] for a in ALL])
def test_fit_predict_shapes(name: str, make, k: int) -> None:
    Xs, ys, Xt, _ = two_domains(0, "subspace", n_per=20)
    model = make()
    assert model.fit(Xs, ys, Xt) is model
    pred = model.predict(Xt[:7])
    assert pred.shape == (7,)
    assert set(pred.tolist()) <= {0, 1, 2}
    assert model.transform(Xt[:5]).shape == (5, k)
    # labels may be any integers; they are returned as given
    pred2 = make().fit(Xs, ys * 10 + 3, Xt).predict(Xt[:7])
    assert set(pred2.tolist()) <= {3, 13, 23}


@pytest.mark.parametrize(("name", "make", "k"), ALL, ids=[a[0] for a in ALL])
def test_bad_input(name: str, make, k: int) -> None:
    Xs, ys, Xt, _ = two_domains(0, "subspace", n_per=10)
    with pytest.raises(RuntimeError, match="not fitted"):
        make().predict(Xt)
    with pytest.raises(ValueError, match="Xt"):
        make().fit(Xs, ys, Xt[:, :5])
    with pytest.raises(ValueError, match="ys"):
        make().fit(Xs, ys[:-1], Xt)
    with pytest.raises(ValueError, match="ys"):
        make().fit(Xs, np.zeros(len(Xs), dtype=int), Xt)  # one class only
    with pytest.raises(ValueError, match="ys"):
        make().fit(Xs, np.full(len(Xs), 0.5), Xt)
    bad = Xs.copy()
    bad[0, 0] = np.nan
    with pytest.raises(ValueError, match="Xs"):
        make().fit(bad, ys, Xt)
    with pytest.raises(ValueError, match="Xs"):
        make().fit(Xs[0], ys, Xt)
    model = make().fit(Xs, ys, Xt)
    with pytest.raises(ValueError, match="X"):
        model.predict(Xt[:, :3])


@pytest.mark.parametrize(
    ("model", "match"),
    [
        (lambda: SourceOnly("knn"), "classifier"),
        (lambda: TCA(kernel="poly"), "kernel"),
        (lambda: TCA(dim=2, mu=0.0), "mu"),
        (lambda: TCA(dim=0), "dim"),
        (lambda: TCA(dim=1000), "dim"),
        (lambda: TCA(dim=2, kernel="rbf", gamma=-1.0), "gamma"),
        (lambda: JDA(dim=2, n_iter=0), "n_iter"),
        (lambda: GFK(dim=30), "dim"),
        (lambda: CORAL(eps=0.0), "eps"),
        (lambda: CORAL(C=-1.0), "C"),
    ],
)
def test_bad_parameters(model, match: str) -> None:
    Xs, ys, Xt, _ = two_domains(0, "subspace", n_per=10)
    with pytest.raises(ValueError, match=match):
        model().fit(Xs, ys, Xt)


def test_bad_gfk_subspaces() -> None:
    with pytest.raises(ValueError, match="Ps"):
        geodesic_flow_kernel(np.ones((5, 2)), _random_basis(np.random.default_rng(0), 5, 2))
