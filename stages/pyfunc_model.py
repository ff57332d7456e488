"""The MLflow pyfunc model of a trained DAH run (a "model from code": MLflow stores this file, not a pickle).

``mlflow.pyfunc.load_model(uri).predict(df)`` and ``mlflow models serve -m URI --env-manager local`` run it:
``load_context`` reads the export file with ``torch.load(weights_only=True)`` (:func:`dahash.codes.export.
load_export`) and builds the encoder once; ``predict`` maps a table with an ``image`` (bytes) or ``path``
column to ``code`` (hex), ``bits`` and ``error`` (:mod:`dahash.codes.serving`, where the model logic lives).
Written by :mod:`stages.log_model`; this module only runs inside MLflow's loader.
"""

from __future__ import annotations

import mlflow.pyfunc
from mlflow.models import set_model


class DahashCodes(mlflow.pyfunc.PythonModel):
    """Images -> DAH hash codes with the export in the model's artifacts (``export``; ``weights`` when the
    backbone's pretrained file is needed)."""

    def load_context(self, context) -> None:  # noqa: ANN001 - MLflow inspects the hints: none given
        from dahash.codes.export import Encoder, load_export

        self.encoder = Encoder(load_export(context.artifacts["export"]), weights=context.artifacts.get("weights"))

    def predict(self, context, model_input, params=None):  # noqa: ANN001, ANN201 - as above
        import pandas as pd

        from dahash.codes.serving import encode_table

        cols = set(getattr(model_input, "columns", []))
        if not cols & {"image", "path"}:
            raise ValueError("the input needs an 'image' column (the image file's bytes) or a 'path' column")
        out = encode_table(self.encoder, list(model_input["image"]) if "image" in cols else None,
                           list(model_input["path"]) if "path" in cols else None)
        return pd.DataFrame(out, columns=["code", "bits", "error"])


set_model(DahashCodes())
