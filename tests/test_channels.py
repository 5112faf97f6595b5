"""Each recall channel alone on a tiny hand-made graph with a known answer, behind the one Channel interface."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from recsys.channels.base import Channel, ItemTableServing, top_eligible
from recsys.channels.channels import (
    FriendsChannel,
    GraphFilterChannel,
    ItemToItemChannel,
    PopularChannel,
    TwoTowerChannel,
)
from recsys.errors import ConfigError, DataValidationError, RecsysError
from recsys.index import SearchFilters
from recsys.models.graph_filter import GraphFilter

# 4 users x 5 items.
R = sp.csr_matrix(np.array([[1, 1, 0, 0, 0],
                            [0, 1, 1, 0, 0],
                            [1, 0, 1, 1, 0],
                            [0, 0, 0, 1, 1]], dtype=np.float32))


def test_two_tower_channel_serves_inner_products_through_the_index_with_filters():
    users = np.array([[1, 0], [0, 1], [1, 1], [0, 0]], np.float32)
    items = np.array([[5, 0], [4, 0], [3, 0], [0, 2], [0, 1]], np.float32)
    ch = TwoTowerChannel().from_vectors(R, users, items)
    assert isinstance(ch, Channel)
    np.testing.assert_array_equal(ch.scores([0]), [[5, 4, 3, 0, 0]])
    ids, vals = ch.candidates([0], 2)  # items 0, 1 are user 0's: next best 2 (3), then 3 / 4 tie at 0
    assert ids[0, 0] == 2 and vals[0, 0] == 3 and ids[0, 1] in (3, 4)
    ids, _ = ch.candidates([0], 2, SearchFilters(allow=[3, 4], require_in_stock=False))
    assert set(ids[0]) == {3, 4}
    ids, _ = ch.candidates([1], 1, SearchFilters(exclude=[0], require_in_stock=False))
    assert ids[0, 0] == 3  # 0 excluded, 1 and 2 seen: item 3 (2) beats item 4 (1)


def test_graph_filter_channel_scores_equal_the_dense_linear_filter():
    ch = GraphFilterChannel(filter=GraphFilter(ideal_weight=0.0)).fit(R)
    d = R.toarray().astype(np.float64)
    norm = d / np.sqrt(d.sum(1))[:, None] / np.sqrt(d.sum(0))[None, :]
    ref = d @ (norm.T @ norm)  # r P~, the linear low-pass filter
    np.testing.assert_allclose(ch.scores(np.arange(4)), ref, atol=1e-6)  # float32 sums of a few terms
    ids, vals = ch.candidates([0, 3], 2)
    for row, u in enumerate([0, 3]):
        masked = np.where(d[u] > 0, -np.inf, ref[u])
        assert ids[row, 0] == int(np.argmax(masked))
        assert not d[u, ids[row][ids[row] >= 0]].any()


def test_item_to_item_cooccurrence_table_and_candidates():
    # degrees: items 0-3 have 2 users, item 4 one. Item 3's cosines: 0 -> 1/sqrt(2*2) = .5 (user 2), 2 -> .5
    # (user 2), 4 -> 1/sqrt(2*1) = .707 (user 3). With 2 neighbours a row, item 3 keeps 4 and 0 (the tie .5 goes
    # to the lower column); item 4 keeps only 3. User 3 saw 3 and 4: the one unseen candidate is 0, at .5.
    ids, vals = ItemToItemChannel(neighbours=2).fit(R).candidates([3], 3)
    assert ids[0].tolist() == [0, -1, -1]
    np.testing.assert_allclose(vals[0, 0], 0.5, atol=1e-6)  # float32 of 1/sqrt(4)
    ids, vals = ItemToItemChannel(neighbours=3).fit(R).candidates([3], 3)  # now 2 is reached too
    assert ids[0].tolist() == [0, 2, -1]
    block = ItemToItemChannel(neighbours=3).fit(R).scores([3])
    assert np.isneginf(block[0, 1])  # item 1 is in neither item 3's nor item 4's list: not a candidate


def test_item_table_serving_sums_neighbour_weights():
    table = ItemTableServing(np.array([[1, 2], [0, -1], [0, 1]]), np.array([[.5, .25], [1., -np.inf], [.1, .2]]))
    got = table.scores(sp.csr_matrix(np.array([[1, 0, 1]], np.float32)))
    np.testing.assert_allclose(got, [[0.1, 0.5 + 0.2, 0.25]], atol=1e-7)


def test_popular_channel_uses_the_partners_audience():
    ch = PopularChannel(audiences={"p": [2, 3]}, partner_of={0: "p"}).fit(R)
    # partner p's audience (users 2, 3) interacted with items 0, 2, 3 (x2), 4: user 0 (sees 0, 1) gets 3 first
    ids, _ = ch.candidates([0], 2)
    assert ids[0, 0] == 3 and ids[0, 1] in (2, 4)
    ids, _ = ch.candidates([1], 1)  # no partner: global counts; items 0 and 3 tie at 2... user 1 saw 1, 2
    assert ids[0, 0] in (0, 3)


def test_friends_channel_on_a_hand_made_graph_with_recency():
    recency = sp.csr_matrix(np.array([[0, 0, 0, 0, 0], [0, .2, 1., 0, 0], [.5, 0, .1, .9, 0], [0, 0, 0, 0, 0]],
                                     np.float32))
    ch = FriendsChannel(edges=[(0, 1), (2, 0)], recency=recency).fit(R)
    ids, vals = ch.candidates([0], 5)  # friends 1 and 2: item 2: 1.0 + 0.1, item 3: 0.9; 0, 1 seen
    assert ids[0, :2].tolist() == [2, 3] and ids[0, 2] == -1
    np.testing.assert_allclose(vals[0, :2], [1.1, 0.9], atol=1e-6)
    ids, _ = ch.candidates([3], 2)  # user 3 has no friends: no candidates
    assert (ids == -1).all()


def test_bad_input_raises_typed_errors():
    with pytest.raises(RecsysError, match="not fitted"):
        PopularChannel().candidates([0], 1)
    ch = PopularChannel().fit(R)
    with pytest.raises(DataValidationError, match="rows"):
        ch.candidates([7], 1)
    with pytest.raises(ConfigError, match="positive"):
        ch.candidates([0], 0)
    with pytest.raises(DataValidationError, match="social edges"):
        FriendsChannel(edges=[(0, 9)]).fit(R)
    with pytest.raises(DataValidationError, match="do not match"):
        TwoTowerChannel().from_vectors(R, np.zeros((3, 2)), np.zeros((5, 2)))
    with pytest.raises(DataValidationError, match="filters"):
        top_eligible(np.zeros((2, 3)), 1, None, [None])
