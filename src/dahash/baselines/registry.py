"""The comparison methods of the paper, behind one call: ``run_baseline(algorithm, ...)``.

DAH itself is trained by :mod:`dahash.train.head` (the pipeline's ``train`` stage); every OTHER column of
the paper's tables is an *algorithm* here, run on the extracted features of one transfer task:

============================  ==================  =========================================================
algorithm                     family              what it outputs (arrays of :class:`BaselineOutput`)
============================  ==================  =========================================================
``source_only``               deep                ``pred_target`` (softmax on the DAH head, source labels only),
``dan``, ``dann``                                 ``f_source``/``f_target`` = fc7 features (for A-distance)
``shallow_source_only``       shallow             ``pred_target``: 1-NN (default) or linear SVM on raw features
``tca``, ``gfk``, ``jda``     shallow             ``pred_target``: 1-NN in the adapted space (as their papers)
``coral``                     shallow             ``pred_target``: linear SVM on CORAL-aligned source (its paper)
``itq``, ``kmh``, ``ba``,     hashing             ``u_target`` (codes in {-1, +1}) fitted on TARGET features only,
``bdnn``                                          no labels; retrieval inside the target (``target_split``)
``noda``                      hashing             DPSH on labelled source: ``u_source``, ``u_target``; retrieval
                                                  target queries vs source database (as DAH)
``suh``                       supervised_hashing  DPSH on the labelled target DATABASE part of the split: the
                                                  upper bound; the only algorithm that reads target labels
============================  ==================  =========================================================

``options`` are the algorithm's own keyword arguments (the estimator's constructor, or
:func:`dahash.baselines.deep.train_deep_baseline`); unknown keys raise ``ValueError`` listing the
accepted ones. That is the head mode this module runs. The ``finetune`` mode (source_only, dan, dann, noda,
suh: the paper's protocol; the pipeline's ``baselines.finetune``) trains the method end to end from images in
DAH's fine-tuning loop with :mod:`dahash.baselines.objectives` (``stages.baseline_finetune``); its options are
then the objective's and a few ``train`` keys (:func:`check_options` with ``mode="finetune"``).
``bits``/``seed``/``device`` are passed where the algorithm takes them.

Target split rule (``target_split``): :func:`dahash.eval.split.target_query_database_split` with
``(n_target, query_fraction, split_seed)``: a seeded, label-free random ``round(query_fraction * n_t)``
of the target items are the queries, the rest the database. SuH trains on the database part only.
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from dahash.baselines.modes import MODES

Family = Literal["deep", "shallow", "hashing", "supervised_hashing"]
Retrieval = Literal["source_database", "target_split"]

__all__ = ["ALGORITHMS", "MODES", "Algorithm", "BaselineOutput", "algorithm_of", "check_options", "run_baseline"]


@dataclass(frozen=True)
class Algorithm:
    """One comparison algorithm: its family, retrieval protocol (None: no codes) and its factory."""

    name: str
    family: Family
    retrieval: Retrieval | None
    target: Callable[..., Any]  # the constructor / trainer whose keyword arguments are the options
    uses_target_labels: bool = False
    paper: str = ""


@dataclass
class BaselineOutput:
    """What a comparison run leaves for evaluation.

    arrays: any of ``pred_target (n_t,) int64``, ``u_source (n_s, d)``, ``u_target (n_t, d)`` float32,
        ``f_source (n_s, h)``, ``f_target (n_t, h)`` float32 (penultimate features).
    history: per-epoch dicts for the deep algorithms (empty otherwise).
    seconds: wall time of fit + encode/predict.
    """

    arrays: dict[str, np.ndarray]
    history: list[dict[str, float]] = field(default_factory=list)
    seconds: float = 0.0


def _lazy(module: str, name: str) -> Callable[..., Any]:
    import importlib

    return getattr(importlib.import_module(module), name)


def _registry() -> dict[str, Algorithm]:
    from dahash.baselines import CORAL, GFK, ITQ, JDA, TCA, BinaryAutoencoder, KMeansHashing, SourceOnly

    deep = _lazy("dahash.baselines.deep", "train_deep_baseline")
    dpsh = _lazy("dahash.baselines.dpsh", "DPSH")
    bdnn = _lazy("dahash.baselines.bdnn", "BDNN")
    return {
        "source_only": Algorithm("source_only", "deep", None, deep, paper="softmax on the same head, source only"),
        "dan": Algorithm("dan", "deep", None, deep, paper="Long et al. 2015 (MK-MMD)"),
        "dann": Algorithm("dann", "deep", None, deep, paper="Ganin & Lempitsky 2015 (gradient reversal)"),
        "shallow_source_only": Algorithm("shallow_source_only", "shallow", None, SourceOnly, paper="1-NN / SVM"),
        "tca": Algorithm("tca", "shallow", None, TCA, paper="Pan et al. 2011 + 1-NN"),
        "gfk": Algorithm("gfk", "shallow", None, GFK, paper="Gong et al. 2012 + 1-NN"),
        "coral": Algorithm("coral", "shallow", None, CORAL, paper="Sun et al. 2016 + linear SVM"),
        "jda": Algorithm("jda", "shallow", None, JDA, paper="Long et al. 2013 + 1-NN"),
        "itq": Algorithm("itq", "hashing", "target_split", ITQ, paper="Gong & Lazebnik 2011"),
        "kmh": Algorithm("kmh", "hashing", "target_split", KMeansHashing, paper="He et al. 2013"),
        "ba": Algorithm("ba", "hashing", "target_split", BinaryAutoencoder, paper="Carreira-Perpinan & Raziperchikolaei 2015"),
        "bdnn": Algorithm("bdnn", "hashing", "target_split", bdnn, paper="Do et al. 2016 (UH-BDNN)"),
        "noda": Algorithm("noda", "hashing", "source_database", dpsh, paper="DPSH (Li et al. 2016) on the source"),
        "suh": Algorithm("suh", "supervised_hashing", "target_split", dpsh, uses_target_labels=True,
                         paper="DPSH on labelled target (upper bound)"),
    }


ALGORITHMS: tuple[str, ...] = ("source_only", "dan", "dann", "shallow_source_only", "tca", "gfk", "coral", "jda",
                               "itq", "kmh", "ba", "bdnn", "noda", "suh")
#: keyword arguments the runner fills in itself (not options)
_RESERVED = {"self", "method", "xs", "ys", "xt", "num_classes", "bits", "seed", "device", "progress", "X", "y", "Xs",
             "Xt"}


def algorithm_of(name: str) -> Algorithm:
    """The :class:`Algorithm` called ``name`` (ValueError listing the known ones otherwise)."""
    if name not in ALGORITHMS:
        raise ValueError(f"unknown algorithm {name!r}; known: {', '.join(ALGORITHMS)} (DAH runs in the train stage)")
    return _registry()[name]


def accepted_options(algo: Algorithm) -> list[str]:
    """Keyword arguments of the algorithm's constructor/trainer that ``options`` may set."""
    sig = inspect.signature(algo.target)
    return [p for p in sig.parameters if p not in _RESERVED and not p.startswith("_")]


def check_options(name: str, options: Mapping[str, Any], mode: str = "head") -> dict[str, Any]:
    """``options`` as a dict, or ValueError naming the unknown keys and the accepted ones.

    ``mode``: ``head`` (the options are the algorithm's head-mode trainer's keyword arguments) or ``finetune``
    (:data:`dahash.baselines.modes.FINETUNE_METHODS` only: the options are the objective's, ``OBJECTIVE_OPTIONS``,
    and ``train`` keys of ``FINETUNE_TRAIN_KEYS``).
    """
    from dahash.baselines.modes import FINETUNE_METHODS, FINETUNE_TRAIN_KEYS, OBJECTIVE_OPTIONS

    algo = algorithm_of(name)
    if mode not in MODES:
        raise ValueError(f"{name}: mode must be one of {list(MODES)}, got {mode!r}")
    if mode == "finetune":
        if name not in FINETUNE_METHODS:
            raise ValueError(f"{name} cannot be fine-tuned; these can: {list(FINETUNE_METHODS)}")
        allowed = sorted(OBJECTIVE_OPTIONS[name] | FINETUNE_TRAIN_KEYS)
    else:
        allowed = accepted_options(algo)
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise ValueError(f"{name}: unknown option(s) {unknown} ({mode} mode); accepted: {allowed}")
    return dict(options)


def _kwargs(algo: Algorithm, options: Mapping[str, Any], **auto: Any) -> dict[str, Any]:
    """``options`` plus the automatic ``bits``/``seed``/``device`` the target accepts (options win)."""
    params = inspect.signature(algo.target).parameters
    out = {k: v for k, v in auto.items() if k in params}
    out.update(options)
    for key in ("hidden_dims", "domain_hidden"):
        if key in out and out[key] is not None:
            out[key] = tuple(out[key])
    return out


def run_baseline(
    name: str,
    xs: np.ndarray,
    ys: np.ndarray,
    xt: np.ndarray,
    num_classes: int,
    *,
    options: Mapping[str, Any] | None = None,
    bits: int = 64,
    seed: int = 0,
    device: str = "cpu",
    pretrained: Mapping[str, Any] | None = None,
    yt_database: np.ndarray | None = None,
    database_idx: np.ndarray | None = None,
    progress: bool | str = False,
) -> BaselineOutput:
    """Fit algorithm ``name`` on one task and return its target predictions and/or codes.

    Args:
        xs: ``(n_s, f)`` source features; ys: ``(n_s,)`` source labels in ``[0, num_classes)``.
        xt: ``(n_t, f)`` target features (no labels).
        options: the algorithm's own keyword arguments (see :func:`check_options`).
        bits: code length d for hashing algorithms.
        seed: seeds initialisation / sampling where the algorithm has randomness.
        pretrained: optional fc6/fc7 weights for the deep algorithms.
        yt_database, database_idx: SuH only: target labels of the split's DATABASE items and their indices
            into ``xt`` (the query items' labels are never passed).
        progress: a bar over the epochs or iterations of the algorithms that have a ``progress`` argument (deep,
            JDA, KMH, BDNN, DPSH; :mod:`dahash.progress`): False none, True, or a string: the bar's label.

    Returns:
        :class:`BaselineOutput`; codes are float32 in {-1, +1} (hashing) or continuous (noda: DPSH outputs).
    """
    algo = algorithm_of(name)
    opts = check_options(name, options or {})
    xs = np.ascontiguousarray(xs, dtype=np.float32)
    xt = np.ascontiguousarray(xt, dtype=np.float32)
    ys = np.asarray(ys, dtype=np.int64)
    t0 = time.perf_counter()
    arrays: dict[str, np.ndarray] = {}
    history: list[dict[str, float]] = []
    if algo.family == "deep":
        from dahash.baselines.deep import features, predict

        kw = _kwargs(algo, opts, seed=seed, device=device, progress=progress)
        if pretrained is not None and "pretrained" not in kw:
            kw["pretrained"] = pretrained
        model, hist = algo.target(name, xs, ys, xt, num_classes, **kw)
        arrays["pred_target"] = predict(model, xt).astype(np.int64)
        arrays["f_source"], arrays["f_target"] = features(model, xs), features(model, xt)
        keys = list(hist)
        history = [{"epoch": i + 1, **{k: float(hist[k][i]) for k in keys}} for i in range(len(hist[keys[0]]))] if keys else []
    elif algo.family == "shallow":
        est = algo.target(**_kwargs(algo, opts, seed=seed, progress=progress))
        arrays["pred_target"] = np.asarray(est.fit(xs, ys, xt).predict(xt), dtype=np.int64)
    elif name == "noda":
        est = algo.target(bits, **_kwargs(algo, opts, seed=seed, device=device, progress=progress)).fit(xs, ys)
        arrays["u_source"], arrays["u_target"] = est.project(xs), est.project(xt)
    elif name == "suh":
        if yt_database is None or database_idx is None:
            raise ValueError("suh needs yt_database and database_idx (labels of the target split's database part)")
        est = algo.target(bits, **_kwargs(algo, opts, seed=seed, device=device, progress=progress))
        est.fit(xt[database_idx], yt_database)
        arrays["u_target"] = est.encode(xt)
    else:  # unsupervised hashing: target features only
        est = algo.target(bits, **_kwargs(algo, opts, seed=seed, device=device, progress=progress)).fit(xt)
        arrays["u_target"] = est.encode(xt)
    for k in ("u_source", "u_target", "f_source", "f_target"):
        if k in arrays:
            arrays[k] = np.asarray(arrays[k], dtype=np.float32)
    return BaselineOutput(arrays=arrays, history=history, seconds=time.perf_counter() - t0)
