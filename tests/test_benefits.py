"""Benefits (partner coupons with a window and a minimum spend): validation and the price after them."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from recsys.errors import DataValidationError
from recsys.features.benefits import BenefitTable, price_after_benefit, to_ns, validate_benefits

ITEMS = pd.Index(["a", "b", "c"])


def _table() -> BenefitTable:
    df = validate_benefits(pd.DataFrame({
        "media_id": ["kol-1", "kol-1", None, "kol-2"],
        "item_id": ["a", "a", "b", "a"],
        "amount": [10.0, 30.0, 5.0, 50.0],
        "min_spend": [0.0, 100.0, None, 0.0],
        "valid_from": ["2026-01-01", "2026-01-01", None, "2026-01-01"],
        "valid_to": ["2026-02-01", "2026-01-15", None, "2026-02-01"],
    }))
    return BenefitTable.build(df, ITEMS)


def test_best_benefit_follows_partner_window_and_min_spend() -> None:
    t = _table()
    jan10, jan20, mar = to_ns("2026-01-10"), to_ns("2026-01-20"), to_ns("2026-03-01")
    pos = np.array([0, 0, 1, 2])
    # kol-1 on Jan 10: item a at price 120 gets the 30 coupon (min spend 100 reached), b the everyone-coupon 5
    assert t.best(pos, [120, 80, 40, 40], "kol-1", jan10).tolist() == [30.0, 10.0, 5.0, 0.0]
    # Jan 20: the 30 coupon has expired (valid_to is exclusive and past); the 10 one still counts
    assert t.best(pos, [120, 80, 40, 40], "kol-1", jan20).tolist() == [10.0, 10.0, 5.0, 0.0]
    # March: every dated benefit has expired; only the undated everyone-coupon on b is left
    assert t.best(pos, [120, 80, 40, 40], "kol-1", mar).tolist() == [0.0, 0.0, 5.0, 0.0]
    # another partner never sees kol-1's coupons; no partner sees only the everyone-coupon
    assert t.best(pos, [120, 80, 40, 40], "kol-2", jan10).tolist() == [50.0, 50.0, 5.0, 0.0]
    assert t.best(pos, [120, 80, 40, 40], None, jan10).tolist() == [0.0, 0.0, 5.0, 0.0]


def test_per_row_partner_and_time() -> None:
    t = _table()
    media = np.array(["kol-1", "kol-2", "kol-1"], dtype=object)
    at = np.array([to_ns("2026-01-10"), to_ns("2026-01-10"), to_ns("2026-01-15")])
    assert t.best(np.array([0, 0, 0]), [150, 150, 150], media, at).tolist() == [30.0, 50.0, 10.0]


def test_window_end_is_exclusive() -> None:
    t = _table()
    assert t.best(np.array([0]), [120], "kol-1", to_ns("2026-01-15"))[0] == 10.0
    assert t.best(np.array([0]), [120], "kol-1", to_ns("2026-01-15") - 1)[0] == 30.0


def test_price_after_benefit_never_negative_and_no_stacking() -> None:
    used, after = price_after_benefit(np.array([100.0, 8.0]), np.array([20.0, 0.0]), np.array([15.0, 10.0]))
    assert used.tolist() == [20.0, 10.0]
    assert after.tolist() == [80.0, 0.0]


def test_empty_table() -> None:
    assert BenefitTable.empty(3).best(np.array([0, 2]), [1.0, 2.0], "x", 0).tolist() == [0.0, 0.0]


@pytest.mark.parametrize("frame, words", [
    (pd.DataFrame({"media_id": ["m"], "item_id": ["a"]}), "amount"),
    (pd.DataFrame({"media_id": ["m"], "item_id": ["a"], "amount": [0.0]}), "> 0"),
    (pd.DataFrame({"media_id": ["m"], "item_id": ["a"], "amount": [-1.0]}), "amount"),
    (pd.DataFrame({"media_id": ["m"], "item_id": ["a"], "amount": [1.0], "valid_from": ["2026-02-01"],
                   "valid_to": ["2026-01-01"]}), "end before they start"),
])
def test_bad_tables_get_clear_errors(frame: pd.DataFrame, words: str) -> None:
    with pytest.raises(DataValidationError, match=words):
        validate_benefits(frame)


def test_unknown_item_is_refused() -> None:
    df = validate_benefits(pd.DataFrame({"media_id": ["m"], "item_id": ["zz"], "amount": [1.0]}))
    with pytest.raises(DataValidationError, match="not in the items table"):
        BenefitTable.build(df, ITEMS)
