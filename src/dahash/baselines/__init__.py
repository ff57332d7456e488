"""Shallow domain-adaptation baselines of the DAH paper (tables 2-3): GFK, TCA, CORAL, JDA.

Each is a scikit-learn-style estimator with ``fit(Xs, ys, Xt)``, ``transform(X)`` and
``predict(Xt)``; :class:`SourceOnly` is the no-adaptation reference. numpy/scipy/scikit-learn only.

Hashing baselines (Table 4) and deep DA baselines (Tables 2-3)
----------------------------------------------------------------
Hashing: :class:`ITQ` (``itq.py``), :class:`KMeansHashing` (``kmh.py``), :class:`BinaryAutoencoder`
(``ba.py``), :class:`BDNN` (``bdnn.py``, torch) and :class:`DPSH` with :func:`fit_noda` /
:func:`fit_suh` (``dpsh.py``, torch). All have ``fit(X, y=None)`` (DPSH requires ``y``) and
``encode(X) -> (n, bits)`` float32 codes in ``{-1, +1}``; evaluate with ``dahash.eval.metrics.binarize`` (``u > 0``) and
``dahash.eval.metrics.mean_average_precision``. Deep DA: :func:`train_deep_baseline`
(``"source_only"``, ``"dan"``, ``"dann"``) with ``dahash.baselines.deep.predict`` and
``dahash.baselines.deep.features`` (``deep.py``, torch). Every name is imported lazily, on first
access, so ``import dahash.baselines`` loads neither scikit-learn nor torch.

Retrieval protocol (query/database rule):

* Methods trained with labelled source data (NoDA = DPSH on the source, and DAH itself):
  queries = all target codes, database = all source codes (``dahash.eval.metrics``' setting).
* Methods without a source database -- the unsupervised ITQ, KMH, BA, BDNN -- use target data
  only. They are fitted on the target features (transductive, as DAH; no labels), and
  retrieval is inside the target domain with the deterministic split
  :func:`dahash.eval.split.target_query_database_split`: a seeded, uniformly random
  ``round(0.1 * n_t)`` of the target items are the queries and the other 90% the database.
  The split uses NO class labels (no stratification); labels only define relevance at
  evaluation. Default ``query_fraction=0.1``, ``seed=0``.
* SuH (DPSH trained on labelled target data, the upper bound that legitimately uses target
  labels): trained on the database part of the same split, queries = the held-out query part,
  database = the database part.
"""

# Every name is imported on first access (PEP 562): ``import dahash.baselines`` (or its light
# registry) then costs nothing, and scikit-learn/scipy (about 1 s) or torch are loaded only by
# the jobs that fit one of these methods.
_LAZY = {
    "CORAL": "dahash.baselines.coral",
    "GFK": "dahash.baselines.gfk",
    "geodesic_flow_kernel": "dahash.baselines.gfk",
    "JDA": "dahash.baselines.jda",
    "SourceOnly": "dahash.baselines.source_only",
    "TCA": "dahash.baselines.tca",
    "BinaryAutoencoder": "dahash.baselines.ba",
    "ITQ": "dahash.baselines.itq",
    "KMeansHashing": "dahash.baselines.kmh",
    "BDNN": "dahash.baselines.bdnn",
    "DPSH": "dahash.baselines.dpsh",
    "fit_noda": "dahash.baselines.dpsh",
    "fit_suh": "dahash.baselines.dpsh",
    "train_deep_baseline": "dahash.baselines.deep",
}
__all__ = list(_LAZY)


def __getattr__(name: str):  # noqa: ANN202 - module-level lazy import hook
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'dahash.baselines' has no attribute {name!r}")

