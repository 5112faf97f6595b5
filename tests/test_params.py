"""recsys.params.hyperparameters: constructor arguments only (not learned or private state), JSON-ready."""

from __future__ import annotations

import inspect

from recsys.features.pipeline import FeaturePipeline
from recsys.models.baselines import ImplicitALS
from recsys.params import hyperparameters


class _Model:
    def __init__(self, *, dim: int = 8, columns: tuple[str, ...] = ("a", "b")) -> None:
        self.dim = dim
        self.columns = columns
        self._cache = {}

    def fit(self) -> _Model:
        self.weights_ = [1.0]
        return self


def test_learned_and_private_state_is_left_out_and_tuples_become_lists():
    model = _Model(dim=4).fit()
    assert hyperparameters(model) == {"dim": 4, "columns": ["a", "b"]}
    assert type(model)(**{k: tuple(v) if isinstance(v, list) else v for k, v in hyperparameters(model).items()}).dim == 4


def test_library_objects_report_their_constructor_arguments():
    assert list(ImplicitALS(factors=8).get_params()) == list(inspect.signature(ImplicitALS).parameters)
    assert ImplicitALS(factors=8).get_params()["factors"] == 8
    assert hyperparameters(FeaturePipeline(history_len=7))["history_len"] == 7
