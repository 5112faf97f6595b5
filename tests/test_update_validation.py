"""Catalogue updates take the training data contract: values are read one way or refused, never misread.

``set_in_stock`` used to turn any truthy value into True ("no", "false" and NaN left an item in stock) and
``add_items`` took NaN, inf and negative prices, commission_rate=50 (ranked first in most commission feeds)
and tables without price/brand/title. Now add_items goes through the training validator
(:func:`recsys.features.schema.validate_items`, which reads 'yes'/'no'/'true'/'false'/1/0 in ``in_stock`` the
same way for training and updates), set_in_stock takes bools only, and a refused update changes nothing.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from recsys.errors import DataValidationError
from tests.test_recommender import fitted, world

ITEM = 33


@pytest.fixture(scope="module")
def clone():
    """A Recommender of its own (own index, no ranker)."""
    from recsys.recommender import Recommender

    w, s = world(), fitted()._state
    return Recommender.from_components(pipeline=s.pipeline, model=s.model, items=w.items, events=w.events,
                                       users=w.users, social=w.social, media=w.media, media_pools=w.media_pools,
                                       no_partner="catalogue")  # the feeds here ask without a partner


def _fingerprint(rec) -> tuple:
    """What an update changes: the state object, the index's live ids and stock flags."""
    st = rec._state.index._state
    return rec._state, sorted(rec._state.index.ids.tolist()), st.in_stock.copy(), st.alive.copy()


def _unchanged(rec, before) -> bool:
    """Exact on purpose: the same state object, ids, and boolean stock/alive flags (no floats compared)."""
    after = _fingerprint(rec)
    return after[0] is before[0] and after[1] == before[1] and np.array_equal(after[2], before[2]) \
        and np.array_equal(after[3], before[3])


def _new_item(item_id: int, **changes) -> pd.DataFrame:
    w = world()
    src = w.items[w.items["in_stock"] & (w.items["eligibility"] == "")].iloc[[2]]
    return src.assign(item_id=item_id, **changes).reset_index(drop=True)


@pytest.mark.parametrize("flag", ["no", "false", "False", "0", "yes", np.nan, None, 0.0, 2, [False]],
                         ids=["no", "false", "False", "str0", "yes", "nan", "none", "float0", "int2", "list1"])
def test_set_in_stock_refuses_anything_but_bools(clone, flag):
    ids = [ITEM, ITEM + 1] if isinstance(flag, list) else [ITEM]  # a list of one flag for two ids
    before = _fingerprint(clone)
    with pytest.raises(DataValidationError, match=r"in_stock.*(True or False|per id)"):
        clone.set_in_stock(ids, flag)
    assert _unchanged(clone, before)
    assert clone._state.catalogue.in_stock[clone._state.catalogue.positions([ITEM])[0]]


def test_set_in_stock_names_the_bad_flag_in_a_sequence(clone):
    with pytest.raises(DataValidationError, match=r"in_stock\[1\] is str 'no'"):
        clone.set_in_stock([ITEM, ITEM + 1], [True, "no"])
    with pytest.raises(DataValidationError, match=r"in_stock\[0\] is float nan"):
        clone.set_in_stock([ITEM], np.array([np.nan]))
    with pytest.raises(DataValidationError, match="3 flag.s. for 2 id"):
        clone.set_in_stock([ITEM, ITEM + 1], np.array([True, False, True]))


@pytest.mark.parametrize("flag", [False, np.bool_(False), 0, np.int64(0), [0], np.array([False]),
                                  pd.Series([False])], ids=["bool", "np.bool", "int", "np.int", "list", "array", "series"])
def test_set_in_stock_reads_bools_and_0_1(clone, flag):
    cat_pos = clone._state.catalogue.positions([ITEM])[0]
    clone.set_in_stock([ITEM], flag)
    assert not clone._state.catalogue.in_stock[cat_pos]
    assert ITEM not in set(clone.recommend_batch(list(range(40)), k=100)["item_id"])
    clone.set_in_stock([ITEM], True)
    assert clone._state.catalogue.in_stock[cat_pos]


def test_add_items_reads_in_stock_as_training_does(clone):
    """'no' in an items table means out of stock for training (validate_items) and for add_items alike."""
    from recsys.features.schema import validate_items

    assert not validate_items(_new_item(70_000, in_stock="no"))["in_stock"].iloc[0]
    clone.add_items(pd.concat([_new_item(70_000, in_stock="no"), _new_item(70_001, in_stock="yes")]))
    cat = clone._state.catalogue
    assert cat.in_stock[cat.positions([70_000, 70_001])].tolist() == [False, True]
    assert 70_000 not in set(clone.recommend_batch(list(range(40)), k=150)["item_id"])


@pytest.mark.parametrize("changes, words", [
    ({"in_stock": "maybe"}, ["'in_stock'", "not booleans"]),
    ({"in_stock": np.nan}, ["'in_stock'", "not booleans"]),
    ({"price": np.nan}, ["'price'", "NaN"]),
    ({"price": np.inf}, ["'price'", "infinite"]),
    ({"price": -1.0}, ["'price'", "below 0"]),
    ({"commission_rate": 50.0}, ["'commission_rate'", "above 1", "divide percentages by 100"]),
    ({"commission_rate": np.inf}, ["'commission_rate'", "infinite"]),
], ids=["stock-maybe", "stock-nan", "price-nan", "price-inf", "price-negative", "rate-50", "rate-inf"])
def test_add_items_refuses_what_training_refuses_and_changes_nothing(clone, changes, words):
    before = _fingerprint(clone)
    with pytest.raises(DataValidationError) as e:
        clone.add_items(pd.concat([_new_item(70_100), _new_item(70_101, **changes)]))
    assert all(w in str(e.value) for w in words), str(e.value)
    assert "Fix:" in str(e.value)
    assert _unchanged(clone, before)
    assert (clone._state.catalogue.positions([70_100, 70_101]) < 0).all()  # not even the good row


def test_add_items_refuses_ids_of_another_type(clone):
    before = _fingerprint(clone)
    with pytest.raises(DataValidationError, match="holds str ids .* item ids are ints"):
        clone.add_items(pd.concat([_new_item("x-1"), _new_item("x-2")]))
    assert _unchanged(clone, before)


@pytest.mark.parametrize("column", ["price", "brand", "title", "commission_rate"])
def test_add_items_refuses_a_table_without_a_required_column(clone, column):
    before = _fingerprint(clone)
    with pytest.raises(DataValidationError, match=f"missing required column.*'{column}'"):
        clone.add_items(_new_item(70_200).drop(columns=[column]))
    assert _unchanged(clone, before)


def test_add_items_refuses_pool_rows_for_unknown_items(clone):
    before = _fingerprint(clone)
    with pytest.raises(DataValidationError, match="media_pools: column 'item_id' names items"):
        clone.add_items(_new_item(70_300), media_pools=pd.DataFrame({"media_id": ["guide-0"], "item_id": [99_999]}))
    assert _unchanged(clone, before)


def test_a_commission_rate_of_50_percent_is_refused_not_ranked_first(clone):
    """The issue's case: one copy of an item with commission_rate=50 (meant 50%) topped commission feeds."""
    with pytest.raises(DataValidationError, match="Rates are fractions"):
        clone.add_items(_new_item(70_400, commission_rate=50))
    clone.add_items(_new_item(70_400, commission_rate=0.5))  # the fraction is accepted
    assert clone._state.catalogue.commission_rate[clone._state.catalogue.positions([70_400])[0]] == 0.5
