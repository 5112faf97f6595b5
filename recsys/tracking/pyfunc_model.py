"""The MLflow "model from code" for a recsys bundle (this file is logged as the model's code).

MLflow's default for a custom ``PythonModel`` is to cloudpickle the object and unpickle it on load,
which runs whatever the pickle says. We log *this file* instead (``python_model=<path to this file>``):
on load MLflow executes it, it hands MLflow a fresh :class:`GuessYouLikeModel` through
``mlflow.models.set_model``, and ``load_context`` opens the bundle directory that was logged as the
model's ``bundle`` artifact with :func:`recsys.load`, which verifies every checksum and reads only
JSON, safetensors, parquet and FAISS files. No pickle of our code or data is written or read.

This file itself is not covered by the bundle's checksums, and MLflow runs it before ``load_context``:
``load_context`` refuses to go on when the file that ran differs from the one the installed recsys ships
(a model logged by another version, an accidental edit), but only
:func:`recsys.tracking.model_code.load_pyfunc`, which checks the file before MLflow imports it, protects
against a deliberate edit in the artifact store (see docs/RELIABILITY.md, "Loading and trust").
"""

from __future__ import annotations

import mlflow
import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE
from mlflow.pyfunc import PythonModel

from recsys.errors import DataValidationError


class RequestError(DataValidationError, MlflowException):
    """A request the model refuses: still a :class:`~recsys.errors.DataValidationError` for Python callers, and
    an ``MlflowException`` so that ``mlflow models serve`` answers it as a 400 with the message, no traceback."""

    def __init__(self, message: str) -> None:
        MlflowException.__init__(self, message, error_code=INVALID_PARAMETER_VALUE)


class GuessYouLikeModel(PythonModel):
    """Requests (user_id; optional k, media_id, exclude) and params in, feeds out; see :mod:`recsys.tracking.feeds`."""

    def load_context(self, context) -> None:
        from recsys.recommender import Recommender
        from recsys.tracking.model_code import code_sha256

        if code_sha256(__file__) != code_sha256():
            from recsys.errors import ArtifactError

            raise ArtifactError(f"{__file__} differs from the pyfunc_model.py of the installed recsys: re-log the "
                                "model with this recsys, or load it with recsys.tracking.model_code.load_pyfunc")
        self.recommender = Recommender.load(context.artifacts["bundle"])  # a bundle directory

    def predict(self, context, model_input: pd.DataFrame, params=None) -> pd.DataFrame:
        from recsys.tracking.feeds import predict_feeds

        try:
            return predict_feeds(self.recommender, model_input, params)
        except DataValidationError as e:
            raise RequestError(str(e)) from None


mlflow.models.set_model(GuessYouLikeModel())
