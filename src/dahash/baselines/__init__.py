"""Shallow domain-adaptation baselines of the DAH paper (tables 2-3): GFK, TCA, CORAL, JDA.

Each is a scikit-learn-style estimator with ``fit(Xs, ys, Xt)``, ``transform(X)`` and
``predict(Xt)``; :class:`SourceOnly` is the no-adaptation reference. numpy/scipy/scikit-learn only.

Hashing baselines (Table 4) and deep DA baselines (Tables 2-3)
----------------------------------------------------------------
Hashing: :class:`ITQ` (``itq.py``), :class:`KMeansHashing` (``kmh.py``), :class:`BinaryAutoencoder`
(``ba.py``), :class:`BDNN` (``bdnn.py``, torch) and :class:`DPSH` with :func:`fit_noda` /
:func:`fit_suh` (``dpsh.py``, torch). All have ``fit(X, y=None)`` (DPSH requires ``y``) and
``encode(X) -> (n, bits)`` float32 codes in ``{-1, +1}``; evaluate with ``dahash.metrics.binarize`` (``u > 0``) and
``dahash.metrics.mean_average_precision``. Deep DA: :func:`train_deep_baseline`
(``"source_only"``, ``"dan"``, ``"dann"``) with ``dahash.baselines.deep.predict`` and
``dahash.baselines.deep.features`` (``deep.py``, torch). The torch-based names are imported
lazily, so ``import dahash.baselines`` stays numpy-only.

Retrieval protocol (query/database rule):

* Methods trained with labelled source data (NoDA = DPSH on the source, and DAH itself):
  queries = all target codes, database = all source codes (``dahash.metrics``' setting).
* Methods without a source database -- the unsupervised ITQ, KMH, BA, BDNN -- use target data
  only. They are fitted on the target features (transductive, as DAH; no labels), and
  retrieval is inside the target domain with the deterministic split
  :func:`target_query_database_split` (``split.py``): a seeded, uniformly random
  ``round(0.1 * n_t)`` of the target items are the queries and the other 90% the database.
  The split uses NO class labels (no stratification); labels only define relevance at
  evaluation. Default ``query_fraction=0.1``, ``seed=0``.
* SuH (DPSH trained on labelled target data, the upper bound that legitimately uses target
  labels): trained on the database part of the same split, queries = the held-out query part,
  database = the database part.
"""

from dahash.baselines.coral import CORAL
from dahash.baselines.gfk import GFK, geodesic_flow_kernel
from dahash.baselines.jda import JDA
from dahash.baselines.source_only import SourceOnly
from dahash.baselines.tca import TCA

from dahash.baselines.ba import BinaryAutoencoder
from dahash.baselines.itq import ITQ
from dahash.baselines.kmh import KMeansHashing
from dahash.baselines.split import target_query_database_split

__all__ = ["CORAL", "GFK", "JDA", "TCA", "SourceOnly", "geodesic_flow_kernel"]
__all__ += ["ITQ", "BinaryAutoencoder", "KMeansHashing", "target_query_database_split"]

# torch-based baselines, imported on first access (PEP 562) to keep this package import light
_LAZY = {
    "BDNN": "dahash.baselines.bdnn",
    "DPSH": "dahash.baselines.dpsh",
    "fit_noda": "dahash.baselines.dpsh",
    "fit_suh": "dahash.baselines.dpsh",
    "train_deep_baseline": "dahash.baselines.deep",
}
__all__ += list(_LAZY)


def __getattr__(name: str):  # noqa: ANN202 - module-level lazy import hook
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'dahash.baselines' has no attribute {name!r}")

