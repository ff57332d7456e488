"""Batch composition of the authors' trainer: K source items of every class in class order, then
the same number of target items; one epoch is one pass over the (shuffled) target set."""

from __future__ import annotations

import math

import numpy as np

__all__ = ["KPerClassSampler", "target_batches"]


class KPerClassSampler:
    """Draws ``k`` source indices of every class, class 0 first, as one ``(k*C,)`` array.

    Each class keeps its own shuffled permutation of its items and a cursor; a batch takes the
    next ``k`` items of every class, reshuffling the class's permutation when it is exhausted.
    So an item repeats only when its permutation wraps, and never twice in one batch unless the
    class has fewer than ``k`` items: on a wrap in the middle of a batch, the items already taken
    for this batch are moved to the end of the new permutation.

    Args:
        labels: ``(n,)`` integer source labels in ``[0, num_classes)``.
        num_classes: ``C >= 1``; every class must have at least one item.
        k: items per class per batch, ``>= 1``.
        rng: ``np.random.Generator``; all shuffles come from it.
    """

    def __init__(self, labels: np.ndarray, num_classes: int, k: int, rng: np.random.Generator) -> None:
        labels = np.asarray(labels)
        if labels.ndim != 1:
            raise ValueError(f"labels must be 1-D, got shape {labels.shape}")
        if labels.size and not np.issubdtype(labels.dtype, np.integer):
            raise ValueError(f"labels must be integers, got dtype {labels.dtype}")
        if int(num_classes) < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        if int(k) < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        if not isinstance(rng, np.random.Generator):
            raise ValueError(f"rng must be a numpy.random.Generator, got {type(rng).__name__}")
        if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
            raise ValueError(
                f"labels must lie in [0, {num_classes - 1}], got values in [{labels.min()}, {labels.max()}]"
            )
        self.num_classes, self.k, self.rng = int(num_classes), int(k), rng
        self._items: list[np.ndarray] = []
        for c in range(self.num_classes):
            idx = np.flatnonzero(labels == c)
            if idx.size == 0:
                raise ValueError(f"class {c} has no source items; every class needs at least one")
            self._items.append(idx)
        self._perms = [rng.permutation(idx) for idx in self._items]
        self._cursors = [0] * self.num_classes

    @property
    def batch_size(self) -> int:
        """``k * C``."""
        return self.k * self.num_classes

    def _take(self, c: int) -> np.ndarray:
        out: list[int] = []
        while len(out) < self.k:
            perm, cur = self._perms[c], self._cursors[c]
            if cur == perm.size:
                perm = self.rng.permutation(self._items[c])
                if out:  # keep this batch's items out of the front of the new permutation
                    taken = np.isin(perm, out)
                    perm = np.concatenate([perm[~taken], perm[taken]])
                self._perms[c], cur = perm, 0
            n_take = min(self.k - len(out), perm.size - cur)
            out.extend(perm[cur : cur + n_take].tolist())
            self._cursors[c] = cur + n_take
        return np.asarray(out, dtype=np.int64)

    def state_dict(self) -> dict[str, list]:
        """Copy of the sampler's position: ``{"perms": [C arrays], "cursors": [C ints]}``.

        ``perms[c]`` is class ``c``'s current ``(n_c,)`` int64 permutation of its item indices and
        ``cursors[c]`` in ``[0, n_c]`` how many of them were handed out. The shared ``rng`` is NOT
        included: save ``rng.bit_generator.state`` alongside (the trainer does).
        """
        return {"perms": [p.copy() for p in self._perms], "cursors": [int(c) for c in self._cursors]}

    def load_state_dict(self, state: dict) -> None:
        """Restore a :meth:`state_dict` (arrays or tensors accepted for ``perms``).

        Raises:
            ValueError: missing ``perms``/``cursors``, wrong number of classes, a ``perms[c]`` that
                is not a permutation of class ``c``'s items, or a cursor outside ``[0, n_c]``.
        """
        if not isinstance(state, dict) or "perms" not in state or "cursors" not in state:
            raise ValueError("sampler state must be a dict with 'perms' and 'cursors'")
        perms_in, cursors_in = list(state["perms"]), list(state["cursors"])
        if len(perms_in) != self.num_classes or len(cursors_in) != self.num_classes:
            raise ValueError(
                f"sampler state perms/cursors must have {self.num_classes} entries, "
                f"got {len(perms_in)} and {len(cursors_in)}"
            )
        perms: list[np.ndarray] = []
        cursors: list[int] = []
        for c, (perm, cur) in enumerate(zip(perms_in, cursors_in)):
            arr = np.asarray(perm, dtype=np.int64).reshape(-1)
            if arr.shape != self._items[c].shape or not np.array_equal(np.sort(arr), np.sort(self._items[c])):
                raise ValueError(f"sampler state perms[{c}] is not a permutation of class {c}'s items")
            if isinstance(cur, bool) or not 0 <= int(cur) <= arr.size:
                raise ValueError(f"sampler state cursors[{c}] must be in [0, {arr.size}], got {cur!r}")
            perms.append(arr.copy())
            cursors.append(int(cur))
        self._perms, self._cursors = perms, cursors

    def next_batch(self) -> np.ndarray:
        """``(k*C,)`` int64 indices into ``labels``: k of class 0, then k of class 1, ..."""
        return np.concatenate([self._take(c) for c in range(self.num_classes)])


def target_batches(n_target: int, batch_size: int, rng: np.random.Generator) -> list[np.ndarray]:
    """One epoch over the target set: ``ceil(n_target / batch_size)`` batches of exactly
    ``batch_size`` indices each.

    The target set is shuffled (``rng.permutation``) and cut into consecutive chunks; the last
    chunk is filled up by wrapping around to the start of the same permutation (repeatedly when
    ``n_target < batch_size``). Every index appears at least once per epoch; only the fill-up
    repeats items.
    """
    if int(n_target) < 1:
        raise ValueError(f"n_target must be >= 1, got {n_target}")
    if int(batch_size) < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    n_batches = math.ceil(n_target / batch_size)
    perm = rng.permutation(n_target).astype(np.int64)
    flat = np.resize(perm, n_batches * batch_size)  # np.resize repeats the array cyclically
    return [flat[i * batch_size : (i + 1) * batch_size] for i in range(n_batches)]
