"""dahash: Deep Hashing Network for Unsupervised Domain Adaptation (Venkateswara et al., CVPR 2017).

The library layer: pure Python + torch + numpy. It never imports snakemake, dvc or mlflow and never
reads params.yaml; the stages in ``stages/`` do that. Grouped by concern:

* ``dahash.data``: the dataset and weights registry, download, manifests, images, digits, the SURF reader;
* ``dahash.nn``: backbones, the DAH head (``model``), input recipes, augmentation, feature extraction;
* ``dahash.train``: the head and fine-tune loops, losses, sampler, checkpoints, gamma selection, and
  ``run_model`` (read a run's model.pt safely and rebuild its network);
* ``dahash.eval``: metrics, the Hamming kernel, scoring, the query split, analysis, and ``records`` (the
  metrics record schema, the protocols and the evaluation rules, stated once);
* ``dahash.report``: the comparison report (model, tables, figures, page) and the published numbers;
* ``dahash.codes``: model export, the code index, the search page;
* ``dahash.baselines``: the comparison methods and their registry.

The names users import most are available here, loaded on first use (PEP 562), so ``import dahash`` stays
cheap::

    >>> import dahash
    >>> enc = dahash.Encoder(dahash.load_export("models/.../seed0"))          # doctest: +SKIP
    >>> index = dahash.Index.from_u(enc.encode(paths).u, paths)                   # doctest: +SKIP
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

#: public name -> the module (relative to this package) that defines it; imported on first access
_LAZY: dict[str, str] = {
    "Encoder": ".codes.export",
    "ExportError": ".codes.export",
    "derive_export": ".codes.export",
    "load_export": ".codes.export",
    "save_export": ".codes.export",
    "Index": ".codes.index",
    "SearchError": ".codes.index",
    "SearchResult": ".codes.index",
    "binarize": ".eval.metrics",
    "hamming_distance": ".eval.metrics",
    "mean_average_precision": ".eval.metrics",
    "precision_recall_curve": ".eval.metrics",
    "retrieval_scores": ".eval.metrics",
    "score": ".eval.evaluation",
    "PROTOCOLS": ".eval.records",
    "DAHHead": ".nn.model",
    "DAHConfig": ".train.head",
    "train_dah": ".train.head",
    "encode": ".train.head",
    "read_model_file": ".train.run_model",
    "get_dataset": ".data.datasets",
    "folder_dataset": ".data.datasets",
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    """``dahash.<name>`` for the names of :data:`_LAZY`: the defining module is imported on first access."""
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name], __name__), name)
        globals()[name] = value  # later accesses skip this hook
        return value
    raise AttributeError(f"module 'dahash' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])
