"""The compiled point-in-time counts equal the NumPy ones, value for value, and refuse bad buffers clearly."""

from __future__ import annotations

import numpy as np
import pytest

import recsys.features.event_index as cvr
from recsys.features.event_index import EventIndex

pytestmark = pytest.mark.skipif(cvr._COUNT is None, reason="recsys/features/_counts.c was not built")


def _index(seed: int = 0, n_keys: int = 50, n_events: int = 3000) -> EventIndex:
    rng = np.random.default_rng(seed)
    keys = rng.integers(0, n_keys, n_events) ** 2  # gaps in the key space
    times = rng.integers(0, 500, n_events) * 10
    return EventIndex(keys, times)


@pytest.mark.parametrize("t", [-5, 0, 1, 2500, 2501, 4990, 10_000])
def test_compiled_counts_equal_numpy_for_every_window_and_range(t):
    idx = _index()
    windows = [None, 0, 10, 95, 1000, 10**9]
    keys = np.array([0, 1, 4, 9, 16, 100, 2401, 3, 7, 10_000], np.int64)
    got = idx.count_windows(keys, np.array([t]), windows)
    want = idx._count_windows_numpy(keys, np.array([t]), windows)
    assert len(got) == len(want) == len(windows)
    for g, w in zip(got, want, strict=True):
        np.testing.assert_array_equal(g, w)
    assert sum(int(g.sum()) for g in got) > 0 or t < 100  # a test that counts something
    for lo, hi in ((0, 10), (16, 17), (2401, 2402), (5000, 6000)):  # one key block, searched alone
        inside = np.arange(lo, min(hi, lo + 12), dtype=np.int64)
        got = idx.count_windows(inside, np.array([t]), windows, (lo, hi))
        want = idx._count_windows_numpy(inside, np.array([t]), windows, (lo, hi))
        for g, w in zip(got, want, strict=True):
            np.testing.assert_array_equal(g, w)


def test_many_times_and_compressed_keys_take_the_numpy_path(monkeypatch):
    calls = []
    monkeypatch.setattr(cvr, "_COUNT", lambda *a: calls.append(a))
    idx = _index()
    idx.count_windows(np.array([1, 4]), np.array([100, 200]), [None])  # one time per query
    sparse = EventIndex(np.array([2**61, 5]), np.array([1, 2]))  # a compressed (sparse) key space
    assert sparse.key_vocab is not None
    np.testing.assert_array_equal(sparse.count_windows(np.array([2**61, 5, 7]), np.array([3]), [None])[0], [1, 1, 0])
    assert not calls


def test_compiled_counts_refuse_wrong_buffer_sizes():
    idx = _index()
    with pytest.raises(ValueError, match="out holds 8 bytes, expected 16"):
        cvr._COUNT(idx.sorted, -1, -1, int(idx.stride), idx.uniq_times, np.array([1, 2], np.int64), 5,
                   np.array([-1], np.int64), np.zeros(1, np.int64))
    with pytest.raises(ValueError, match="code_lo <= code_hi"):
        cvr._COUNT(idx.sorted, 5, -1, int(idx.stride), idx.uniq_times, np.array([1], np.int64), 5,
                   np.array([-1], np.int64), np.zeros(1, np.int64))
