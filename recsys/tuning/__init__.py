"""Hyper-parameter search (``recsys tune``, :mod:`recsys.tuning.study`) over ``recsys train`` configs.

Optuna is imported only when a study runs (``pip install 'recsys[tune]'``).
"""

from recsys.tuning.spec import TuneSpec, load_tune_spec, parse_duration

__all__ = ["TuneSpec", "load_tune_spec", "parse_duration"]
