"""Array checks shared by the evaluation modules: torch or numpy in, validated numpy out (names in every error)."""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["_as_bits", "_as_matrix", "_as_vector", "_to_numpy"]


def _to_numpy(x: Any) -> np.ndarray:
    """Return ``x`` as a numpy array; torch tensors are detached and moved to the CPU first."""
    if hasattr(x, "detach") and hasattr(x, "cpu"):  # torch.Tensor without importing torch
        x = x.detach().cpu().numpy()
    return np.asarray(x)


def _as_matrix(x: Any, name: str) -> np.ndarray:
    a = _to_numpy(x)
    if a.ndim != 2:
        raise ValueError(f"{name} must be a 2-D array (N, d); got shape {a.shape}")
    return a


def _as_vector(x: Any, name: str, length: int | None = None, length_of: str = "") -> np.ndarray:
    a = _to_numpy(x)
    if a.ndim != 1:
        raise ValueError(f"{name} must be a 1-D array; got shape {a.shape}")
    if length is not None and a.shape[0] != length:
        raise ValueError(
            f"{name} has {a.shape[0]} entries but {length_of} has {length} rows; they must match"
        )
    return a


def _as_bits(x: Any, name: str) -> np.ndarray:
    """Validate a (N, d) matrix of {0, 1} bits and return it as uint8."""
    a = _as_matrix(x, name)
    if a.dtype != np.bool_ and not np.isin(a, (0, 1)).all():
        raise ValueError(
            f"{name} must contain only 0/1 bits (use binarize() on the continuous outputs first)"
        )
    return a.astype(np.uint8, copy=False)


