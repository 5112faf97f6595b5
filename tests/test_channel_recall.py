"""``recsys benchmark channels``: candidate recall of the embedding channel alone and merged with the item-to-item
channel, on a tiny LightGCN directory where the item table finds what a weak embedding misses."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from recsys.bench.channel_recall import _table_top, run_channel_recall_benchmark
from recsys.feed.item_table import ItemTable


def test_table_top_ranks_like_the_engine_and_skips_banned_items():
    table = ItemTable(indptr=np.array([0, 3, 5, 5, 5]), indices=np.array([1, 2, 3, 2, 3]),
                      weights=np.array([0.5, 0.4, 0.1, 0.2, 0.5], np.float32))
    # from seeds 0 and 1: item 2 gets 0.6, item 3 0.6, item 1 0.5; ties go to the lower position
    assert _table_top(table, np.array([0, 1]), np.zeros(0, np.int64), 3).tolist() == [2, 3, 1]
    assert _table_top(table, np.array([1, 0]), np.array([2]), 5).tolist() == [3, 1]


def _pairs_dir(root: Path) -> Path:
    """Users hold one item of a pair (2i, 2i+1) in training and the other in test; some other users hold both,
    so co-occurrence links each pair."""
    rng = np.random.default_rng(0)
    train, test = [], []
    for u in range(120):
        pairs = rng.choice(40, size=3, replace=False)
        if u < 60:
            train.append((u, [2 * p for p in pairs]))
            test.append((u, [2 * p + 1 for p in pairs]))
        else:
            train.append((u, [x for p in pairs for x in (2 * p, 2 * p + 1)]))
    (root / "train.txt").write_text("\n".join(" ".join(map(str, [u, *its])) for u, its in train) + "\n")
    (root / "test.txt").write_text("\n".join(" ".join(map(str, [u, *its])) for u, its in test) + "\n")
    return root


@pytest.mark.slow
def test_the_merge_keeps_the_first_n_and_finds_the_paired_items(tmp_path):
    pytest.importorskip("implicit")
    out = run_channel_recall_benchmark(_pairs_dir(tmp_path), tmp_path / "r.json", n_candidates=2, extras=(3,),
                                       log=lambda m: None)
    saved = json.loads((tmp_path / "r.json").read_text())
    assert saved == json.loads(json.dumps(out)) and (tmp_path / "r.md").read_text().startswith("# Candidate recall")
    row = saved["candidate_recall"][0]
    assert row["extra"] == 3 and row["mean_candidates_merged"] <= 5
    # the merge holds the embedding's first n, so it never finds less than them
    assert row["embedding_plus_item_to_item"] >= row["embedding_first_n_only"]
    # each test item is its training item's strongest neighbour: the table finds most of them
    assert saved["alone_at_20"]["item_to_item"] > 0.8
    assert row["embedding_plus_item_to_item"] > 0.8
