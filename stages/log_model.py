"""A trained run as an MLflow pyfunc model (``tracking.log_model: true``): save, log, register.

The model folder (:func:`save_pyfunc`) holds MLflow's ``MLmodel`` with a signature, the code of
:mod:`stages.pyfunc_model` (no pickled Python object: a "model from code") and the artifacts ``export`` (the
run's :mod:`dahash.codes.export` file, read back with ``weights_only=True``) and, when the backbone needs it,
``weights`` (the pretrained file). Input: ``image`` (binary) or ``path`` (string) -> ``code`` (hex), ``bits``,
``error`` (:mod:`dahash.codes.serving`). :func:`log_pyfunc` copies it into the run's artifacts under ``model``
(``runs:/<run id>/model``; the run is not reopened) and registers it under ``tracking.register_model`` when set.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

PYFUNC_CODE = Path(__file__).with_name("pyfunc_model.py")


def signature():  # -> mlflow.models.ModelSignature
    """Input ``image`` (binary) or ``path`` (string), both optional per row; output ``code``, ``bits``, ``error``."""
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, Schema

    return ModelSignature(inputs=Schema([ColSpec("binary", "image", required=False),
                                         ColSpec("string", "path", required=False)]),
                          outputs=Schema([ColSpec("string", "code"), ColSpec("long", "bits"),
                                          ColSpec("string", "error")]))


def save_pyfunc(model_dir: Path, out: Path, *, weights: Path | None = None) -> Path:
    """Write the pyfunc model of the run folder ``model_dir`` to the new folder ``out``; returns ``out``."""
    import mlflow.pyfunc

    from dahash.codes.export import _resolve_weights, derive_export, save_export

    export = derive_export(model_dir, weights=weights)
    with tempfile.TemporaryDirectory(prefix="dahash-pyfunc-") as tmp:
        artifacts = {"export": str(save_export(export, Path(tmp) / "export.pt"))}
        needs_file = export["backbone"] == "vggf" or (export["backbone"] in ("efficientnet_lite0", "vgg16")
                                                      and export["trunk_state"] is None)
        if needs_file:
            artifacts["weights"] = str(_resolve_weights(export, weights))
        mlflow.pyfunc.save_model(str(out), python_model=str(PYFUNC_CODE), artifacts=artifacts,
                                 signature=signature(), pip_requirements=["dahash", "mlflow", "torch"])
    return out


def log_pyfunc(run_id: str, model_dir: Path, register_as: str | None = None) -> str | None:
    """Save the pyfunc model and log it into run ``run_id`` as ``model``; register it as ``register_as`` when given.
    Returns the model URI, or None (a WARNING line) when the store refused: tracking never fails a training."""
    from stages import tracking

    try:
        with tempfile.TemporaryDirectory(prefix="dahash-pyfunc-") as tmp:
            save_pyfunc(model_dir, Path(tmp) / "model")
            tracking.client().log_artifacts(run_id, str(Path(tmp) / "model"), "model")
        uri = f"runs:/{run_id}/model"
        if register_as:
            import mlflow

            mlflow.set_tracking_uri(tracking.tracking_uri())
            mv = mlflow.register_model(uri, register_as)
            print(f"registered {uri} as model {register_as!r} version {mv.version}", flush=True)
        return uri
    except Exception as exc:  # noqa: BLE001 - the model files stay in models/; logging is a convenience
        print(f"WARNING: could not log the MLflow model of run {run_id} ({tracking.describe(exc)}); "
              f"its files stay in {model_dir}", file=sys.stderr, flush=True)
        return None
