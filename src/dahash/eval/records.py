"""The metrics record: one JSON object per (method, task, seed), written by the evaluate stage and read by the report.

This module is the single copy of three things: the record's schema (:data:`REQUIRED_KEYS`, the optional keys
and their allowed values, :func:`check_record`), the evaluation protocols (:data:`PROTOCOLS`) and the
evaluation rules in words (:data:`EVALUATION_RULES`, :func:`run_rules`, :func:`report_rules`), which every
record carries under ``rules`` and every report prints. docs/evaluation.md explains the same rules for people.

Keys (fractions in [0, 1]; ``null`` = not applicable, never 0):

* required: ``task``, ``source``, ``target``, ``method``, ``dataset``, ``backbone``, ``hash_bits``, ``seed``,
  ``accuracy`` (null: the method has no classifier), ``map`` (null: no codes; NaN: no query was scored),
  ``n_target``, ``n_source``;
* optional: ``algorithm``, ``family`` (:data:`FAMILIES`), ``retrieval`` (:data:`RETRIEVALS`), ``protocol``
  (:data:`PROTOCOLS`; absent: ``dah``), ``query_fraction`` and ``split_seed`` (pwcf), ``n_target_trained``,
  ``uses_target_labels`` (SuH: the supervised upper bound), ``epochs``, ``n_queries``, ``n_database``,
  ``n_queries_scored``, ``n_queries_empty``, ``precision_at_k`` ({"100": fraction, ...}), ``precision_radius2``,
  ``n_queries_radius2_empty``, ``area_rp`` (pwcf: PWCF's own "mAP", :mod:`dahash.eval.curves`; else null),
  ``db_per_class`` (the source database capped per class, ``eval.db_per_class``; null: the whole source),
  ``rules`` (:func:`run_rules`), ``mlflow_run_id``, ``train_seconds``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

__all__ = ["AREA_RP_RULE", "DB_CAP_RULE", "EVALUATION_RULES", "FAMILIES", "PROTOCOLS", "PROTOCOL_SETTINGS",
           "PWCF_RULE", "REQUIRED_KEYS", "RETRIEVALS", "check_record", "metrics_record", "report_rules", "run_rules"]

REQUIRED_KEYS: tuple[str, ...] = ("task", "source", "target", "method", "dataset", "backbone", "hash_bits", "seed",
                                  "accuracy", "map", "n_target", "n_source")

#: allowed values of a record's optional ``family`` key
FAMILIES: tuple[str, ...] = ("dah", "deep", "shallow", "hashing", "supervised_hashing")
#: allowed values of a record's optional ``retrieval`` key (None: no retrieval, no codes)
RETRIEVALS: tuple[str, ...] = ("source_database", "target_split")
#: evaluation protocols: the DAH paper's (all target queries) and PWCF's (a share of the target as queries);
#: a record's optional ``protocol`` key (absent: ``dah``)
PROTOCOLS: tuple[str, ...] = ("dah", "pwcf")

#: The evaluation rules implemented by :mod:`dahash.eval.metrics`, worded for a report's protocol section.
EVALUATION_RULES: dict[str, str] = {
    "codes": "b = 1[u > 0] on the tanh outputs (an exact 0 is bit 0), as in the authors' calcMap.m; "
    "training's quantization loss uses sign(0) = +1",
    "retrieval": "queries = all target codes, database = all source codes, relevant = same class",
    "ranking": "full Hamming ranking of the whole database (no top-k); ties keep database order "
    "(stable sort)",
    "AP": "(1/R) x sum of precision@r over the ranks r of the R relevant items",
    "empty queries": "queries with no relevant database item are excluded from the mAP mean "
    "(and counted)",
    "classification": "eq. 6, code variant: argmax_j of sum of exp(u_t . u_s) over the first 200 "
    "source items of class j, continuous outputs",
    "PR curves": "Hamming-radius retrieval (distance <= r) for r = 0..d over the same distances",
    "precision@k": "(#relevant in ranks 1..k) / k, k = 100, 500, 1000 (k > n: n), on the same stable ranking: "
    "a tie group cut at the k-th position contributes its first items in database order; mean over the "
    "queries scored by mAP",
    "precision within radius 2": "relevant / retrieved among the items at Hamming distance <= 2; a query "
    "retrieving nothing within radius 2 counts as 0; mean over the queries scored by mAP",
}

#: the rules of a run beyond the metrics: model selection, the target split, what a null means
_RUN_RULES: dict[str, str] = {
    "model": "final epoch (no model selection); no target label is read before this stage "
             "(SuH, the supervised upper bound, trains on the labels of the target split's database part)",
    "target split": "unsupervised hashing and SuH: target-only retrieval, queries = a seeded uniformly random "
                    "round(query_fraction x n_t) of the target items (no labels used), database = the rest",
    "not applicable": "null accuracy: the method has no classifier; null mAP: the method has no codes",
}

#: ``retrieval`` under the pwcf protocol
PWCF_RULE = ("queries = a seeded uniformly random round(query_fraction x n_t) of the target items (no labels used), "
             "left out of training; database = all source codes; relevant = same class (PWCF, CVPR 2020, and the "
             "cross-domain hashing papers since)")

#: ``area_RP`` under the pwcf protocol
AREA_RP_RULE = ("PWCF's own 'mAP' (fuxianghuang1/PWCF recall_precision.m + area_RP.m): trapezoidal area under the "
                "Hamming-radius precision-recall curve pooled over ALL query-database pairs, radii 0 .. (largest "
                "distance - 1); not the per-query ranking mAP")
#: the source database capped per class (``eval.db_per_class``)
DB_CAP_RULE = ("the source database (mAP, PR, precision) is the first eval.db_per_class source items of each class "
               "in manifest order (the authors' digits test_dah.m, boostSize)")

#: the report's ``setting`` line per protocol
PROTOCOL_SETTINGS: dict[str, str] = {
    "dah": "unsupervised domain adaptation, transductive: all labeled source + all unlabeled target images "
           "for training; tested on all target images",
    "pwcf": "unsupervised domain adaptation, pwcf protocol (PWCF, CVPR 2020, and the cross-domain "
            "hashing papers since): all labeled source + the unlabeled target images except the "
            "queries for training; queries = a seeded random share of the target",
}


def _check_protocol(protocol: str) -> None:
    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown evaluation protocol {protocol!r}; expected one of {list(PROTOCOLS)}")


def run_rules(protocol: str = "dah", db_per_class: int | None = None) -> dict[str, str]:
    """The rules a metrics record carries (``rules``): :data:`EVALUATION_RULES` and the run's rules, the
    retrieval rule replaced by :data:`PWCF_RULE` and :data:`AREA_RP_RULE` added under ``pwcf``;
    :data:`DB_CAP_RULE` with a database cap."""
    _check_protocol(protocol)
    return {**EVALUATION_RULES, **_RUN_RULES,
            **({"retrieval": PWCF_RULE, "area_RP": AREA_RP_RULE} if protocol == "pwcf" else {}),
            **({"database cap": DB_CAP_RULE} if db_per_class else {})}


def report_rules(protocol: str, query_fraction: float, split_seed: int,
                 db_per_class: int | None = None) -> dict[str, str]:
    """The rules of a report's protocol section, in print order (``model`` first), with this run's query share.

    Same wording as :func:`run_rules`; ``retrieval`` names the methods it applies to and, under pwcf, this
    run's share; ``target split`` says this run's share; plus ``SuH``; ``area_RP`` under pwcf and ``database
    cap`` with ``db_per_class`` (``eval.db_per_class``).
    """
    _check_protocol(protocol)
    rules = {"model": _RUN_RULES["model"], **{k: v for k, v in run_rules("dah").items() if k != "model"}}
    if protocol == "pwcf":
        rules["retrieval"] = f"{PWCF_RULE}; this run: {100 * query_fraction:g} % of the target, split seed {split_seed}"
    rules["retrieval"] = f"methods marked 'source database' (DAH, DAH-e, NoDA): {rules['retrieval']}"
    rules["target split"] = (f"{rules['target split']}; this run: {100 * query_fraction:g} % of the target items are "
                             f"queries (split seed {split_seed})")
    rules["SuH"] = "SuH uses target labels: an upper bound, not a domain-adaptation result"
    if protocol == "pwcf":
        rules["area_RP"] = AREA_RP_RULE
    if db_per_class:
        rules["database cap"] = f"{DB_CAP_RULE}; this run: {db_per_class} per class"
    return rules


def metrics_record(*, task_key: str, task: Mapping[str, str], dataset: str, backbone: str, method: str,
                   run: Mapping[str, Any], result: Mapping[str, Any], protocol: str, query_fraction: float,
                   split_seed: int, hash_bits: int, seed: int, epochs: int | None, n_source: int,
                   n_target: int, db_per_class: int | None = None) -> dict[str, Any]:
    """The record of one run: its identity, the scores of :func:`dahash.eval.evaluation.score` (``result``), what
    ``run.json`` (``run``) says about the method, and the rules. ``hash_bits``: used when the method has no codes;
    ``db_per_class``: the cap ``score`` applied to the source database (recorded where a source database was
    ranked)."""
    capped = db_per_class if result["map"] is not None and run.get("retrieval", "source_database") == \
        "source_database" else None
    return {
        "task": task_key, "source": task["source"], "target": task["target"], "dataset": dataset,
        "backbone": backbone, "method": method, "algorithm": run.get("algorithm", "dah"),
        "family": run.get("family", "dah"),
        "retrieval": run.get("retrieval", "source_database") if result["map"] is not None else None,
        "protocol": protocol, "query_fraction": query_fraction if protocol == "pwcf" else None,
        "split_seed": split_seed if protocol == "pwcf" else None,
        "n_target_trained": run.get("n_target_trained"),
        "uses_target_labels": bool(run.get("uses_target_labels", False)),
        "hash_bits": result["bits"] or int(hash_bits),
        "seed": seed, "epochs": epochs, "accuracy": result["accuracy"], "map": result["map"],
        "n_source": int(n_source), "n_target": int(n_target), "n_queries": result["n_queries"],
        "n_database": result["n_database"], "n_queries_scored": result["n_scored"],
        "n_queries_empty": result["n_empty"], "area_rp": result.get("area_rp"), "db_per_class": capped,
        "precision_at_k": {str(k): v for k, v in (result["precision_at_k"] or {}).items()} or None,
        "precision_radius2": result["precision_radius2"], "n_queries_radius2_empty": result["n_radius2_empty"],
        "rules": run_rules(protocol, capped), "mlflow_run_id": run["run_id"],
        "train_seconds": run.get("train_seconds"),
    }


def check_record(rec: Any, where: str) -> dict[str, Any]:
    """Validate one record; return a normalised copy (task/method as str, metrics as float|None).

    Raises:
        ValueError: naming ``where`` and the key: not an object, a required key missing, a score that is not a
            fraction in [0, 1] (or null; NaN only for ``map`` and precisions), an optional key's bad value.
    """
    if not isinstance(rec, Mapping):
        raise ValueError(f"{where}: a record must be a JSON object / dict, got {type(rec).__name__}")
    missing = [k for k in REQUIRED_KEYS if k not in rec]
    if missing:
        raise ValueError(f"{where}: missing required keys {missing}")
    out = dict(rec)
    for key in ("task", "source", "target", "method", "dataset", "backbone"):
        out[key] = str(out[key])
    for key in ("accuracy", "map"):
        val = out[key]
        if val is None:  # not applicable to this method
            continue
        if isinstance(val, bool):
            raise ValueError(f"{where}: {key} must be a number or null, got {val!r}")
        try:
            val = float(val)
        except (TypeError, ValueError):
            raise ValueError(f"{where}: {key} must be a number or null, got {out[key]!r}") from None
        if math.isnan(val):
            if key == "accuracy":
                raise ValueError(f"{where}: accuracy is NaN (use null when the method does not classify)")
        elif not 0.0 <= val <= 1.0:
            raise ValueError(f"{where}: {key} = {val} is not a fraction in [0, 1]")
        out[key] = val
    pk = out.get("precision_at_k")
    if pk is not None:
        if not isinstance(pk, Mapping):
            raise ValueError(f"{where}: precision_at_k must be an object k -> fraction, got {pk!r}")
        out["precision_at_k"] = {str(k): _fraction_or_nan(v, f"{where}: precision_at_k[{k!r}]") for k, v in pk.items()}
    for key in ("precision_radius2", "area_rp"):
        if out.get(key) is not None:
            out[key] = _fraction_or_nan(out[key], f"{where}: {key}")
    for key, allowed in (("family", FAMILIES), ("retrieval", RETRIEVALS), ("protocol", PROTOCOLS)):
        val = out.get(key)
        if val is not None and val not in allowed:
            raise ValueError(f"{where}: {key} = {val!r} is not one of {list(allowed)} (or null)")
    if out.get("algorithm") is not None and not isinstance(out["algorithm"], str):
        raise ValueError(f"{where}: algorithm must be a string, got {out['algorithm']!r}")
    if out.get("uses_target_labels") is not None and not isinstance(out["uses_target_labels"], bool):
        raise ValueError(f"{where}: uses_target_labels must be true/false, got {out['uses_target_labels']!r}")
    return out


def _fraction_or_nan(val: Any, where: str) -> float:
    if isinstance(val, bool) or val is None:
        raise ValueError(f"{where} must be a number, got {val!r}")
    try:
        f = float(val)
    except (TypeError, ValueError):
        raise ValueError(f"{where} must be a number, got {val!r}") from None
    if not (math.isnan(f) or 0.0 <= f <= 1.0):
        raise ValueError(f"{where} = {f} is not a fraction in [0, 1]")
    return f
