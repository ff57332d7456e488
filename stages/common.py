"""Shared helpers for the stages: params loading/validation, atomic writes, the error wrapper.

Kept out of the library on purpose: this is where params.yaml is read. Project paths are in :mod:`stages.paths`
(``ROOT``, ``PARAMS_FILE``, ``project_path`` and ``run_dir`` are re-exported here), devices in :mod:`stages.gpu`.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import hashlib
import json
import os
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NoReturn

import yaml

from stages.paths import PARAMS_FILE, ROOT, project_path, run_dir

__all__ = ["PARAMS_FILE", "ROOT", "StageError", "atomic_path", "check_comparison_keys", "check_cross_keys",
           "comparison_methods", "dataset_spec", "file_md5", "producer_stage", "load_params", "main_wrapper", "method_params", "project_path", "run_dir", "run_seed", "storage_error",
           "task_of", "write_json"]

SCHEMA_FILE = ROOT / "workflow" / "schemas" / "params.schema.yaml"


class StageError(RuntimeError):
    """A user-facing error: printed without a traceback, exit status 1."""


def load_params(path: Path = PARAMS_FILE, *, shown_as: Path | str | None = None) -> dict[str, Any]:
    """Read params.yaml and validate it (JSON schema, then cross-key checks).

    ``shown_as``: the name errors give the file (a temp copy being checked is reported as the file it
    will replace).

    Raises:
        StageError: naming the file and the offending key (e.g. ``train.epochs``) and what to do.
    """
    import jsonschema

    if shown_as is not None:
        try:
            return load_params(path)
        except StageError as exc:
            raise StageError(str(exc).replace(str(path), str(shown_as))) from exc.__cause__
    try:
        params = yaml.safe_load(Path(path).read_text())
    except FileNotFoundError as exc:
        raise StageError(f"{path}: not found; run from the project root or restore it with git") from exc
    except yaml.YAMLError as exc:
        raise StageError(f"{path}: not valid YAML: {exc}") from exc
    schema = yaml.safe_load(SCHEMA_FILE.read_text())
    validator = jsonschema.Draft202012Validator(schema)
    errors = sorted(validator.iter_errors(params), key=lambda e: list(e.absolute_path))
    if errors:
        lines = [f"  {'.'.join(map(str, e.absolute_path)) or '<top>'}: {_schema_message(e)}" for e in errors]
        raise StageError(f"{path}: invalid params (see {SCHEMA_FILE.relative_to(ROOT)}):\n" + "\n".join(lines))
    check_cross_keys(params, path)
    return params


def _schema_message(error: Any) -> str:
    """A schema error in words: a pattern's ``description`` in the schema says what is wrong and what to do
    (``'web cam' does not match '^...$'`` alone does not)."""
    if error.validator == "pattern" and isinstance(error.schema, dict) and error.schema.get("description"):
        return f"{error.instance!r} {error.schema['description']}"
    return error.message


#: gamma_sweep.grid of the paper's selection (sec. 5.2), suggested when train.gamma = auto has no grid
PAPER_GAMMA_GRID = [50.0, 500.0, 5000.0, 50000.0]


def check_cross_keys(params: dict[str, Any], path: Path | str = PARAMS_FILE) -> None:
    """Checks a JSON schema cannot express: domains belong to the dataset, tasks use known domains, the gamma sweep's
    grid is non-empty exactly when ``train.gamma`` is ``auto`` (so that the sweep is in the DAG only then), ..."""
    from dahash.data.datasets import CUSTOM, get_dataset

    dataset = params["data"]["dataset"]
    if dataset == CUSTOM:
        if not params["data"]["mirror"]:
            raise StageError(
                f"{path}: data.dataset = custom needs data.mirror: the folder holding your <domain>/<class>/ images"
            )
        domains: tuple[str, ...] | None = None
    elif dataset == "digits":
        from dahash.data.datasets import DIGITS_DOMAINS

        domains = tuple(DIGITS_DOMAINS)
    else:
        domains = get_dataset(dataset).domains
    unknown = [d for d in params["data"]["domains"] if domains is not None and d not in domains]
    if unknown:
        raise StageError(
            f"{path}: data.domains has {unknown}, not domains of {dataset} {list(domains or [])}; "
            "fix data.domains or apply a preset (python -m stages.preset NAME)"
        )
    for key, task in params["tasks"].items():
        for side in ("source", "target"):
            if task[side] not in params["data"]["domains"]:
                raise StageError(
                    f"{path}: tasks.{key}.{side} = {task[side]!r} is not in data.domains "
                    f"{params['data']['domains']}"
                )
        if task["source"] == task["target"]:
            raise StageError(f"{path}: tasks.{key}: source and target are the same domain")
    check_comparison_keys(params, path)
    comparison = comparison_methods(params)
    if params["backbone"]["name"] == "smallcnn" and comparison:
        raise StageError(f"{path}: comparison methods need a backbone with pretrained weights, which backbone.name = "
                         "smallcnn (trained from scratch) does not have; set baselines.methods: {} and "
                         "baselines.finetune: {}")
    if not params["methods"] and not comparison:
        raise StageError(f"{path}: methods, baselines.methods and baselines.finetune are all empty: nothing to train "
                         "or compare; add a method (e.g. methods: {dah: {}}) or a comparison method")
    for name, overrides in params["methods"].items():
        gamma = (overrides or {}).get("gamma")
        if gamma is not None and (isinstance(gamma, bool) or not isinstance(gamma, (int, float)) or gamma < 0):
            raise StageError(f"{path}: methods.{name}.gamma = {gamma!r}: a method's own gamma must be a number >= 0 "
                             "(train.gamma: auto is swept once for every method that does not set its own)")
    clash = sorted(set(params["methods"]) & set(comparison))
    if clash:
        raise StageError(f"{path}: {clash} named in both methods and baselines.methods/finetune; rename one "
                         "(they share models/<dataset>/<backbone>/<name>/)")
    train = params["train"]
    modes = {m: (o or {}).get("mode", train["mode"]) for m, o in params["methods"].items()}
    modes.update(comparison)
    if params["backbone"]["name"] == "surf800" and (dataset != "office_caltech10" or any(m != "head" for m in modes.values())):
        raise StageError(f"{path}: backbone.name = surf800 (precomputed SURF-800 features) needs "
                         f"data.dataset: office_caltech10 and train.mode: head for every method (modes: {modes})")
    if params["analysis"]["tasks"]:
        missing = [k for k, ok in (("methods.dah", "dah" in params["methods"]),
                                   ("baselines.methods.dan or baselines.finetune.dan", "dan" in comparison),
                                   ("a backbone with pretrained features (not smallcnn)",
                                    params["backbone"]["name"] != "smallcnn")) if not ok]
        if missing:
            raise StageError(
                f"{path}: analysis.tasks = {params['analysis']['tasks']} compares the fc7 features of the backbone, "
                f"DAN and DAH per task; this params.yaml lacks {', '.join(missing)}. Add them, or set "
                "analysis.tasks: [] (e.g. --set 'analysis.tasks=[]'): then the analysis stage is not in the DAG")
    for key in params["analysis"]["tasks"]:
        if key not in params["tasks"]:
            raise StageError(f"{path}: analysis.tasks has {key!r}, not a key of tasks {list(params['tasks'])}")
    if (params.get("image_cache") or {}).get("short_side") == 0 and any(m == "finetune" for m in modes.values()):
        raise StageError(f"{path}: image_cache.short_side = 0 (no image cache) but fine-tuning reads its images from "
                         f"it (modes: {modes}); set image_cache.short_side: auto")
    if params["backbone"]["name"] == "smallcnn" and any(m != "finetune" for m in modes.values()):
        raise StageError(f"{path}: backbone.name = smallcnn has no pretrained weights: set train.mode: finetune "
                         f"for every method (modes: {modes})")
    if (params.get("eval") or {}).get("protocol", "dah") == "pwcf" and comparison:
        raise StageError(f"{path}: eval.protocol = pwcf (queries = {params['eval']['query_fraction']:g} of the target, "
                         "left out of training) is implemented for the DAH methods only; the comparison methods "
                         f"{list(comparison)} would train on the queries. Set baselines.methods: {{}} and "
                         "baselines.finetune: {} (e.g. python -m stages.preset quickstart-pwcf) or eval.protocol: dah")
    if (params.get("eval") or {}).get("protocol", "dah") == "pwcf" and train["gamma"] == "auto":
        raise StageError(f"{path}: eval.protocol = pwcf with train.gamma = auto: the gamma sweep would train on the "
                         "query items; set a fixed train.gamma")
    grid = params["gamma_sweep"]["grid"]
    if train["gamma"] == "auto" and not grid:
        raise StageError(f"{path}: train.gamma = auto needs gamma_sweep.grid, the gammas the sweep tries, e.g. "
                         f"--set 'gamma_sweep.grid={PAPER_GAMMA_GRID}' (the paper's); or set a fixed train.gamma")
    if train["gamma"] != "auto" and grid:
        raise StageError(f"{path}: gamma_sweep.grid = {grid} but train.gamma = {train['gamma']!r} is fixed: the gamma "
                         "sweep runs only with train.gamma: auto. Set gamma_sweep.grid: [] (no sweep), or "
                         "train.gamma: auto to sweep")
    if train["gamma"] == "auto" and train["mode"] != "head":
        raise StageError(f"{path}: train.gamma = auto runs the gamma sweep in head mode; set train.mode: head "
                         "or a fixed train.gamma")


def check_comparison_keys(params: dict[str, Any], path: Path | str = PARAMS_FILE) -> None:
    """``baselines.methods`` (head mode) and ``baselines.finetune`` (fine-tuned end to end) name disjoint methods,
    no entry has the former ``mode`` key, and only the algorithms that can be fine-tuned are (the schema's
    ``baselines.finetune`` algorithm list, :data:`dahash.baselines.modes.FINETUNE_METHODS`: read from the schema so
    that no stage imports dahash.baselines for this check)."""
    allowed = finetune_algorithms()
    head, finetune = params["baselines"]["methods"], params["baselines"]["finetune"]
    for name, entry in head.items():
        if "mode" in (entry or {}):
            raise StageError(f"{path}: baselines.methods.{name}.mode: the key is gone; to fine-tune {name} end to end "
                             f"move it under baselines.finetune, else drop `mode`")
    for name, entry in finetune.items():
        if "mode" in (entry or {}):
            raise StageError(f"{path}: baselines.finetune.{name}.mode: the key is gone (a method under "
                             "baselines.finetune is fine-tuned end to end); drop it")
        algorithm = (entry or {}).get("algorithm", name)
        if algorithm not in allowed:
            raise StageError(f"{path}: baselines.finetune.{name}: {algorithm} cannot be fine-tuned; baselines.finetune "
                             f"takes {', '.join(allowed)} only: move {name} under baselines.methods")
    both = sorted(set(head) & set(finetune))
    if both:
        raise StageError(f"{path}: {both} in both baselines.methods and baselines.finetune; keep each in one "
                         "(baselines.finetune: fine-tuned end to end; baselines.methods: on the cached features)")


def finetune_algorithms() -> list[str]:
    """The algorithms ``baselines.finetune`` accepts, as the schema lists them (tests/test_stages.py checks that
    they are :data:`dahash.baselines.modes.FINETUNE_METHODS`)."""
    schema = yaml.safe_load(SCHEMA_FILE.read_text())
    return list(schema["properties"]["baselines"]["properties"]["finetune"]["additionalProperties"]["properties"]
                ["algorithm"]["enum"])


def comparison_methods(params: dict[str, Any]) -> dict[str, str]:
    """Every comparison method of params.yaml -> its mode: ``head`` (``baselines.methods``) or ``finetune``
    (``baselines.finetune``), in that order."""
    baselines = params["baselines"]
    return {**{m: "head" for m in baselines["methods"]}, **{m: "finetune" for m in baselines.get("finetune") or {}}}


def producer_stage(params: dict[str, Any], method: str) -> str:
    """The dvc.yaml stage family that writes ``method``'s models: ``train`` (a DAH method), ``baseline``
    (``baselines.methods``) or ``baseline_finetune`` (``baselines.finetune``)."""
    mode = comparison_methods(params).get(method)
    return "train" if mode is None else "baseline" if mode == "head" else "baseline_finetune"


def dataset_spec(params: dict[str, Any], *, source: bool = False):  # -> dahash.data.datasets.DatasetSpec
    """The DatasetSpec of ``data.dataset``.

    For ``custom`` (a user's own ``<domain>/<class>/`` folders) the spec is read from the folders:
    from ``data.mirror`` for the download stage (``source=True``), from the copy under data/raw/custom
    for every later stage, so they depend only on DVC-tracked files.
    """
    from dahash.data.datasets import CUSTOM, folder_dataset, get_dataset

    data = params["data"]
    if data["dataset"] == "digits":  # built by dahash.data.digits.prepare_digits as <domain>/<digit>/*.png
        return folder_dataset(ROOT / "data" / "raw" / "digits", data["domains"], name="digits")
    if data["dataset"] != CUSTOM:
        return get_dataset(data["dataset"])
    raw = ROOT / "data" / "raw" / CUSTOM
    root = project_path(data["mirror"]) if source or not raw.exists() else raw
    try:
        return folder_dataset(root, data["domains"])
    except ValueError as exc:
        raise StageError(str(exc)) from exc


def task_of(params: dict[str, Any], key: str) -> dict[str, str]:
    """``tasks.<key>`` ({source, target}), or a StageError listing the defined tasks."""
    if key not in params["tasks"]:
        raise StageError(f"params.yaml: tasks.{key} not defined; tasks are {list(params['tasks'])}")
    return params["tasks"][key]


def method_params(params: dict[str, Any], method: str) -> dict[str, Any]:
    """``train`` params with ``methods.<method>``'s overrides applied (e.g. dah_e: eta = 0)."""
    if method not in params["methods"]:
        raise StageError(f"params.yaml: methods.{method} not defined; methods are {list(params['methods'])}")
    return {**params["train"], **(params["methods"][method] or {})}


def run_seed(params: dict[str, Any], method: str, seed: int | None = None) -> int:
    """The seed of a run: the given one for DAH methods, ``baselines.seed`` for comparison methods."""
    if method in comparison_methods(params):
        return int(params["baselines"]["seed"])
    if seed is None:
        raise StageError(f"{method}: a DAH method needs --seed")
    return seed


# ---------------------------------------------------------------- atomic writes
@contextlib.contextmanager
def atomic_path(dest: Path) -> Iterator[Path]:
    """Yield a temp path beside ``dest``; on success rename it onto ``dest`` (file or directory).

    On error the temp path is removed and ``dest`` is left as it was. Leftovers of an earlier write of
    ``dest`` that was killed before its rename are swept first (:func:`dahash.atomic.sweep_stale_temps`).
    """
    from dahash.atomic import sweep_stale_temps, temp_prefix

    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    sweep_stale_temps(dest)  # leftovers of a killed earlier run of this write (dahash.atomic)
    tmp = Path(tempfile.mkdtemp(prefix=temp_prefix(dest), suffix=".tmp", dir=dest.parent))
    tmp.rmdir()
    try:
        try:
            yield tmp
        except OSError as exc:
            if exc.errno is not None and exc.filename is None:  # e.g. ENOSPC from a write: name the output
                raise OSError(exc.errno, exc.strerror or str(exc), str(dest)) from exc
            raise
        except RuntimeError as exc:  # torch.save(obj, path) reports a failed write as "unexpected pos N vs M"
            if "unexpected pos" in str(exc) or "failed writing" in str(exc):
                raise OSError(errno.EIO, f"writing failed, the disk is probably full (torch: "
                                         f"{str(exc).strip().splitlines()[-1]})", str(dest)) from exc
            raise
        if dest.is_dir() and not dest.is_symlink():
            old = dest.with_name(f"{temp_prefix(dest)}old")
            shutil.rmtree(old, ignore_errors=True)
            dest.rename(old)
            tmp.rename(dest)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, dest)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp) if tmp.is_dir() else tmp.unlink()


def offline() -> bool:
    """``DAHASH_OFFLINE=1`` in the environment: never touch the network, use local files only (download, weights)."""
    return os.environ.get("DAHASH_OFFLINE", "").strip().lower() in {"1", "true", "yes"}


def load_arrays(path: Path, *, redo: str) -> Any:
    """A ``.npy`` array, or a ``.npz`` file as ``{name: array}``, read in full without pickles.

    Raises:
        FileNotFoundError: as ``np.load`` (callers say which stage makes the file).
        StageError: one line naming the file and ``redo`` (the command that rewrites it) when it holds pickled
            Python objects (never loaded: unpickling runs code) or is not a NumPy file at all.
    """
    import zipfile

    import numpy as np

    try:
        loaded = np.load(path, allow_pickle=False)
        if isinstance(loaded, np.ndarray):
            return loaded
        with loaded:
            return {k: loaded[k] for k in loaded.files}
    except FileNotFoundError:
        raise
    except ValueError as exc:
        if "pickle" in str(exc):
            raise StageError(f"{path}: holds pickled Python objects, which are never loaded (unpickling runs "
                             f"code); it was not written by this pipeline. Delete it and rerun: {redo}") from None
        raise StageError(f"{path}: not a valid NumPy file ({exc}); delete it and rerun: {redo}") from None
    except (OSError, EOFError, zipfile.BadZipFile) as exc:
        raise StageError(f"{path}: unreadable NumPy file ({type(exc).__name__}: {exc}); delete it and rerun: "
                         f"{redo}") from None


def write_json(dest: Path, obj: Any) -> None:
    """Atomically write ``obj`` as pretty JSON."""
    with atomic_path(dest) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True, default=_json_default) + "\n")


def _json_default(o: Any) -> Any:
    import numpy as np

    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, Path):
        return o.as_posix()
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def file_md5(path: Path, chunk: int = 1 << 20) -> str:
    """MD5 of a file's bytes (DVC 3's hash for a file output)."""
    h = hashlib.md5()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


_STORAGE_ERRNOS = {errno.ENOSPC: "no space left on the device", errno.EROFS: "read-only file system",
                   errno.EACCES: "permission denied", errno.EPERM: "operation not permitted",
                   errno.EIO: "input/output error", getattr(errno, "EDQUOT", -1): "disk quota exceeded"}


def storage_error(exc: OSError) -> str | None:
    """One line for a full / read-only / unwritable disk (the path and what to do), else None."""
    if exc.errno not in _STORAGE_ERRNOS:
        return None
    what = exc.strerror if exc.errno == errno.EIO and exc.strerror else _STORAGE_ERRNOS[exc.errno]
    where = f"writing {exc.filename}" if exc.filename else "writing the stage's outputs"
    fix = ("free some space" if exc.errno in (errno.ENOSPC, errno.EIO, getattr(errno, "EDQUOT", -1))
           else "make the folder writable")
    return (f"{what} while {where}: {fix}, then rerun (nothing half-written was kept; a training job "
            "resumes from its last checkpoint)")


def domain_args(argv: list[str] | None, description: str | None) -> argparse.Namespace:
    """``--domain D`` (required), the argument of the per-domain stages (extract, image_cache)."""
    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("--domain", required=True, help="a domain of data.domains")
    return ap.parse_args(argv)


def user_error(exc: BaseException) -> str | None:
    """The one line a stage prints for ``exc`` (a StageError, a downloader's DownloadError, a full or unwritable
    disk), or None for an error that keeps its traceback (a bug).

    DownloadError is looked up, not imported: only a stage that imported :mod:`dahash.data.fetch` (where it is
    defined; :mod:`dahash.data.download` imports it) can raise one, and the others do not depend on that module."""
    if isinstance(exc, StageError):
        return str(exc)
    fetch = sys.modules.get("dahash.data.fetch")
    if fetch is not None and isinstance(exc, fetch.DownloadError):
        return str(exc)
    return storage_error(exc) if isinstance(exc, OSError) else None


def main_wrapper(main: Callable[[list[str] | None], None]) -> Callable[[list[str] | None], None]:
    """Run a stage's main; a StageError (or a library error with a user message) exits 1 with no traceback,
    and so does a full, read-only or unwritable disk (:func:`storage_error`: one line naming the path).

    Run as a program (``python -m stages.X``: ``main`` is defined in ``__main__``), the process then ends at
    once through :func:`exit_now`, without the interpreter's teardown of every imported module (1-2 s after
    torch and MLflow on the development machine; benchmarks/bench_exp_run.py). Called from Python (tests, other
    code), it returns or raises as any function."""
    as_program = main.__module__ == "__main__"

    def wrapped(argv: list[str] | None = None) -> None:
        try:
            main(argv)
        except (StageError, RuntimeError, OSError) as exc:
            line = user_error(exc)
            if line is None:
                raise
            print(f"ERROR: {line}", file=sys.stderr)
            if as_program:
                exit_now(1)
            raise SystemExit(1) from None
        if as_program:
            exit_now(0)

    return wrapped


def exit_now(code: int) -> NoReturn:
    """End the process with ``code`` as Python's own exit does (non-daemon threads joined, ``atexit`` handlers
    run: logging, temporary folders, MLflow's and multiprocessing's clean-up; stdout and stderr flushed), but
    without tearing the imported modules down one by one, which is all that is left and takes seconds."""
    import atexit
    import threading

    for thread in threading.enumerate():
        if thread is not threading.main_thread() and not thread.daemon:
            thread.join()
    atexit._run_exitfuncs()  # CPython's own call at exit (it prints, and survives, a failing handler)
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):
            stream.flush()
    os._exit(code)
