"""Leakage guards: evaluation refuses data whose answers leak into what the model saw.

Three guards, each raising :class:`recsys.errors.LeakageError` with examples and the fix:
a test pair that is also a training pair, a feature table with rows at or after the split time,
and a label column listed among the features (a peer library's ESMM example reported a CVR
AUC of 1.0 that way).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

import numpy as np
import scipy.sparse as sp

if TYPE_CHECKING:
    import pandas as pd

from recsys.errors import DataValidationError, LeakageError


def check_no_overlap(train: sp.spmatrix, test: sp.spmatrix, *, max_examples: int = 5) -> None:
    """Raise LeakageError if any (user, item) pair is non-zero in both ``train`` and ``test``."""
    both = sp.csr_matrix(train != 0).multiply(sp.csr_matrix(test != 0)).tocoo()
    both.eliminate_zeros()
    if both.nnz == 0:
        return
    pairs = ", ".join(f"(user {u}, item {i})" for u, i in zip(both.row[:max_examples], both.col[:max_examples],
                                                               strict=True))
    raise LeakageError(
        f"{both.nnz:,} test pairs also appear in train, e.g. {pairs}.\n"
        "Evaluation masks training items, so these test items could never be hit, and a model that "
        "memorised them would look better than it is.\n"
        "Fix: remove them from the test set, e.g. `test = test - test.multiply(train > 0)`, or split "
        "by time so each pair lands on one side (pass check_leakage=False only if that is intended)."
    )


def _as_datetime(values: pd.Series | pd.Timestamp, name: str):
    """Timestamps as datetime64[ns]: integers are read as Unix seconds, strings parsed."""
    import pandas as pd

    if isinstance(values, pd.Series):
        if pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values):
            return pd.to_datetime(values, unit="s")
        return pd.to_datetime(values)
    if isinstance(values, int | float | np.integer | np.floating):
        return pd.Timestamp(values, unit="s")
    try:
        return pd.Timestamp(values)
    except (TypeError, ValueError) as e:
        raise DataValidationError(f"{name}={values!r} is not a time (use a pandas Timestamp, "
                                  "an ISO string or Unix seconds).") from e


def check_features_before_split(
    features: pd.DataFrame,
    split_time,
    *,
    timestamp_col: str = "timestamp",
    name: str = "feature table",
    max_examples: int = 5,
) -> None:
    """Raise LeakageError if ``features`` holds any row stamped at or after ``split_time``.

    Features for evaluation must be computed from events strictly before the split; a row at the
    split time or later carries information from the test period. Integer timestamps are Unix seconds.
    """
    if timestamp_col not in features.columns:
        raise DataValidationError(
            f"{name} has no {timestamp_col!r} column (columns: {list(features.columns)}).\n"
            "Fix: keep the time each feature row was computed at, or pass timestamp_col=<its name>."
        )
    stamps = _as_datetime(features[timestamp_col], timestamp_col)
    split = _as_datetime(split_time, "split_time")
    if getattr(stamps.dt, "tz", None) is not None and split.tzinfo is None:
        split = split.tz_localize(stamps.dt.tz)
    late = np.flatnonzero((stamps >= split).to_numpy())
    if late.size == 0:
        return
    rows = features.iloc[late[:max_examples]]
    examples = "; ".join(f"row {features.index[i]}: {timestamp_col}={stamps.iloc[i]}"
                         for i in late[:max_examples])
    raise LeakageError(
        f"{name}: {late.size:,} of {len(features):,} rows are stamped at or after the split time {split} "
        f"(latest {stamps.max()}), e.g. {examples}.\n"
        f"First offending rows:\n{rows.to_string(max_cols=8)}\n"
        "Fix: recompute the features from events strictly before the split time "
        "(e.g. `events[events.timestamp < split_time]`)."
    )


def check_labels_not_in_features(feature_columns: Iterable[str], label_columns: Iterable[str]) -> None:
    """Raise LeakageError if a label column (click, purchase, ...) is listed among the model's features."""
    leaked = sorted(set(feature_columns) & set(label_columns))
    if leaked:
        raise LeakageError(
            f"label columns {leaked} are among the features: the model would read the answer "
            "(this is how a CVR AUC of 1.0 happens).\nFix: drop them from the feature list."
        )
