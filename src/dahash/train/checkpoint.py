"""Atomic, fingerprinted training checkpoints (``epoch-XXXX.pt``) and resume-from-latest.

A checkpoint folder belongs to ONE training run, identified by a fingerprint (:func:`run_fingerprint`:
sha256 of the hyper-parameters as JSON, the seed, and the shapes, dtypes and bytes of the data). Files:

* ``epoch-0004.pt``: a ``torch.save``d dict with at least ``format``, ``epoch`` and ``fingerprint``;
  written to a temporary file in the same folder, fsynced, then ``os.replace``d into place, so a
  reader sees either the complete file or none (a kill mid-save leaves only a ``*.tmp``);
* only the newest ``keep`` (default 2) checkpoints are kept;
* an unreadable checkpoint found while resuming is renamed ``<name>.corrupt`` and the previous one is
  used (:func:`load_latest_checkpoint`).

Files are read with ``torch.load(weights_only=True)``: payloads may hold tensors, numbers, strings,
and lists/dicts of them (no numpy arrays, no arbitrary objects). One writer per folder.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from dahash.atomic import mkstemp

__all__ = [
    "CHECKPOINT_FORMAT",
    "capture_rng_state",
    "checkpoint_path",
    "checkpoint_progress",
    "cpu_state_dict",
    "list_checkpoints",
    "load_latest_checkpoint",
    "restore_rng_state",
    "run_fingerprint",
    "save_checkpoint",
    "tensor_digest",
]

#: Version of the payload layout written by :func:`save_checkpoint`.
CHECKPOINT_FORMAT: int = 1
_NAME = re.compile(r"^epoch-(\d{4,})\.pt$")
_TMP_GLOB = "epoch-*.pt.*.tmp"


def tensor_digest(x: Tensor | np.ndarray) -> str:
    """sha256 (hex) of an array's dtype, shape and raw bytes (C order, on the CPU).

    One streaming pass over the memory (about 0.1 s for 150 MB), no model work; two arrays get the
    same digest iff they have the same dtype, shape and bit pattern.
    """
    if isinstance(x, Tensor):
        arr = x.detach().cpu().contiguous().numpy()
    elif isinstance(x, np.ndarray):
        arr = np.ascontiguousarray(x)
    else:
        raise ValueError(f"x must be a torch.Tensor or numpy.ndarray, got {type(x).__name__}")
    h = hashlib.sha256(f"{arr.dtype.str}|{arr.shape}|".encode())
    if arr.size:
        h.update(memoryview(arr).cast("B"))
    return h.hexdigest()


def run_fingerprint(config: Mapping[str, Any], seed: int, arrays: Mapping[str, Tensor | np.ndarray],
                    extra: Mapping[str, Any] | None = None) -> str:
    """Identity of a training run: sha256 (hex) of the canonical JSON of::

        {"config": config, "seed": seed, "shapes": {name: [shape, dtype]},
         "data": {name: tensor_digest(array)}, "extra": extra}

    Args:
        config: JSON-serialisable hyper-parameters (e.g. ``dataclasses.asdict(DAHConfig(...))``).
        seed: the run's seed.
        arrays: the data (and any weights) the run depends on, by name.
        extra: other JSON-serialisable facts (e.g. ``num_classes``).

    Raises:
        ValueError: ``config``/``extra`` not JSON-serialisable (non-finite numbers included).
    """
    shapes: dict[str, list] = {}
    data: dict[str, str] = {}
    for name in sorted(arrays):
        arr = arrays[name]
        shapes[name] = [list(arr.shape), str(arr.dtype)]
        data[name] = tensor_digest(arr)
    payload = {"config": dict(config), "seed": int(seed), "shapes": shapes, "data": data,
               "extra": dict(extra or {})}
    try:
        text = json.dumps(payload, sort_keys=True, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"config/extra must be JSON-serialisable with finite numbers: {exc}") from exc
    return hashlib.sha256(text.encode()).hexdigest()


def checkpoint_path(directory: Path, epoch: int) -> Path:
    """``directory / f"epoch-{epoch:04d}.pt"`` (``epoch`` >= 0 completed epochs)."""
    if isinstance(epoch, bool) or int(epoch) < 0:
        raise ValueError(f"epoch must be an int >= 0, got {epoch!r}")
    return Path(directory) / f"epoch-{int(epoch):04d}.pt"


def list_checkpoints(directory: Path) -> list[tuple[int, Path]]:
    """``[(epoch, path), ...]`` of the ``epoch-XXXX.pt`` files in ``directory``, oldest first
    (empty when the folder does not exist)."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    found = []
    for path in directory.iterdir():
        match = _NAME.match(path.name)
        if match and path.is_file():
            found.append((int(match.group(1)), path))
    return sorted(found)


def _fsync_dir(directory: Path) -> None:
    """Persist a rename (POSIX); a no-op where directories cannot be opened (Windows)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def save_checkpoint(directory: Path, epoch: int, payload: Mapping[str, Any], *, keep: int = 2) -> Path:
    """Atomically write ``payload`` as ``epoch-XXXX.pt`` and delete all but the newest ``keep``.

    ``payload`` must hold ``fingerprint`` (str); ``format`` and ``epoch`` are added. The bytes go to
    a temporary file in ``directory`` (fsynced), which ``os.replace`` then renames over the final
    name, so a crash at any point leaves either the old state or the complete new file.

    Returns:
        the path written.
    Raises:
        ValueError: ``keep`` < 1, or ``payload`` without a string ``fingerprint``.
    """
    if isinstance(keep, bool) or int(keep) < 1:
        raise ValueError(f"keep must be an int >= 1, got {keep!r}")
    if not isinstance(payload.get("fingerprint"), str):
        raise ValueError("payload must hold a string 'fingerprint'")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    final = checkpoint_path(directory, epoch)
    data = {**payload, "format": CHECKPOINT_FORMAT, "epoch": int(epoch)}
    fd, tmp_name = mkstemp(directory, final.name + ".", ".tmp")  # the umask's mode, not mkstemp's 0600
    try:
        with os.fdopen(fd, "wb") as fh:
            torch.save(data, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp_name, final)
    except OSError as exc:
        Path(tmp_name).unlink(missing_ok=True)
        if exc.filename is None:  # a failed write (ENOSPC, EIO) says which file it was
            raise OSError(exc.errno, exc.strerror or str(exc), str(final)) from exc
        raise
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    _fsync_dir(directory)
    for _, old in list_checkpoints(directory)[: -int(keep)]:
        old.unlink(missing_ok=True)
    return final


def _read(path: Path, epoch: int) -> dict[str, Any]:
    """Load and structurally check one checkpoint; any failure raises (the caller treats it as corrupt)."""
    data = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(data, dict):
        raise ValueError(f"payload is a {type(data).__name__}, not a dict")
    if data.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"format {data.get('format')!r} != {CHECKPOINT_FORMAT}")
    if data.get("epoch") != epoch:
        raise ValueError(f"epoch {data.get('epoch')!r} does not match the file name")
    if not isinstance(data.get("fingerprint"), str):
        raise ValueError("no fingerprint")
    return data


def load_latest_checkpoint(directory: Path, fingerprint: str) -> dict[str, Any] | None:
    """The newest readable checkpoint in ``directory`` written by the run ``fingerprint``, or None.

    Newest first: a file that cannot be read (truncated, garbage, wrong layout) is renamed
    ``<name>.corrupt`` with a :class:`RuntimeWarning` and the next older one is tried. Leftover
    ``*.tmp`` files of an interrupted save are deleted. None when no readable checkpoint exists.

    Raises:
        ValueError: the newest readable checkpoint has another fingerprint (names the file and says
            to delete the folder or restore the parameters/data).
    """
    directory = Path(directory)
    if not directory.is_dir():
        return None
    for tmp in directory.glob(_TMP_GLOB):
        tmp.unlink(missing_ok=True)
    for epoch, path in reversed(list_checkpoints(directory)):
        try:
            data = _read(path, epoch)
        except Exception as exc:  # noqa: BLE001 - any unreadable file counts as corrupt
            aside = path.with_name(path.name + ".corrupt")
            os.replace(path, aside)
            warnings.warn(
                f"checkpoint {path} is unreadable ({type(exc).__name__}: {exc}); moved to {aside.name}, "
                "falling back to the previous checkpoint",
                RuntimeWarning,
                stacklevel=2,
            )
            continue
        if data["fingerprint"] != fingerprint:
            raise ValueError(
                f"checkpoint {path} was written by a run with other parameters or data (fingerprint "
                f"{data['fingerprint'][:12]}... != {fingerprint[:12]}...); delete the folder {directory} "
                "to start afresh, or restore the parameters, seed and data it was made with"
            )
        return data
    return None


# ----------------------------------------------------------------------------- trainer state helpers
# Shared by dahash.train.head.train_dah and dahash.train.finetune.train_dah_finetune: the payload pieces that
# are the same in both trainers, in torch.load(weights_only=True)-safe types.
def cpu_state_dict(module: nn.Module) -> dict[str, Tensor]:
    """A detached CPU copy of ``module.state_dict()`` (safe to save while training goes on)."""
    return {k: v.detach().cpu().clone() for k, v in module.state_dict().items()}


def capture_rng_state(generator: torch.Generator, rng: np.random.Generator, sampler: Any) -> dict[str, Any]:
    """``{"torch_generator", "numpy_rng", "sampler"}``: the torch generator's state, the numpy
    generator's ``bit_generator.state`` and a :class:`~dahash.train.sampler.KPerClassSampler`'s
    ``state_dict()`` (its permutations as tensors)."""
    sampler_state = sampler.state_dict()
    return {
        "torch_generator": generator.get_state(),
        "numpy_rng": rng.bit_generator.state,
        "sampler": {"perms": [torch.from_numpy(p) for p in sampler_state["perms"]],
                    "cursors": sampler_state["cursors"]},
    }


def restore_rng_state(ckpt: Mapping[str, Any], generator: torch.Generator, rng: np.random.Generator,
                      sampler: Any) -> None:
    """Load a :func:`capture_rng_state` payload (keys of ``ckpt``) in place."""
    generator.set_state(ckpt["torch_generator"])
    rng.bit_generator.state = ckpt["numpy_rng"]
    sampler.load_state_dict({"perms": [t.numpy() for t in ckpt["sampler"]["perms"]],
                             "cursors": list(ckpt["sampler"]["cursors"])})


def checkpoint_progress(ckpt: Mapping[str, Any], epochs: int) -> tuple[int, list[dict[str, float]]]:
    """``(completed epochs, history)`` of a loaded checkpoint of a run of ``epochs`` epochs.

    Raises:
        ValueError: the epoch is not in ``[1, epochs]`` or the history does not have one record per epoch.
    """
    epoch = int(ckpt["epoch"])
    history = [dict(h) for h in ckpt["history"]]
    if not 1 <= epoch <= epochs or len(history) != epoch:
        raise ValueError(f"checkpoint epoch {epoch} / history length {len(history)} do not fit epochs={epochs}")
    return epoch, history
