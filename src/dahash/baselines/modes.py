"""How a comparison method is trained, in one small module without imports so that the report and the params
checks can read it without loading torch. The pipeline sets it by where the method is listed:

* ``head`` (``baselines.methods``): on the cached backbone features (:mod:`dahash.baselines.registry`).
* ``finetune`` (``baselines.finetune``): end to end from images in DAH's fine-tuning loop
  (:mod:`dahash.baselines.objectives`), as the paper trains its deep columns; only for :data:`FINETUNE_METHODS`.
"""

from __future__ import annotations

__all__ = ["FINETUNE_METHODS", "FINETUNE_TRAIN_KEYS", "MODES", "OBJECTIVE_OPTIONS"]

#: training modes of a comparison method
MODES: tuple[str, ...] = ("head", "finetune")
#: comparison algorithms that can be fine-tuned end to end (the paper's deep columns: all fine-tuned there)
FINETUNE_METHODS: tuple[str, ...] = ("source_only", "dan", "dann", "noda", "suh")
#: each fine-tuned algorithm's own options (``baselines.finetune.<M>``)
OBJECTIVE_OPTIONS: dict[str, frozenset[str]] = {
    "source_only": frozenset(), "dan": frozenset({"mmd_weight"}), "dann": frozenset({"dann_weight", "domain_hidden"}),
    "noda": frozenset({"eta"}), "suh": frozenset({"eta"})}
#: ``train.*`` keys a fine-tuned comparison method may override (the rest is DAH's fine-tuning, as the paper)
FINETUNE_TRAIN_KEYS: frozenset[str] = frozenset({"epochs", "k_per_class", "lr_start", "lr_end", "momentum",
                                                 "weight_decay", "bias_decay", "checkpoint_every", "num_workers"})
