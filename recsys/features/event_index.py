"""Point-in-time event counts: how many events of a key happened in ``[t - window, t)``, in O(log n).

:class:`EventIndex` keeps sorted (key, time) pairs; one query time with many keys (a request's candidates)
is counted by this package's C extension (``recsys/features/_counts.c``) when it was built, otherwise with
NumPy (:data:`COUNTS_ENGINE` says which). :mod:`recsys.features.cvr_stats` turns these counts into
smoothed rates.

Live events grow an index without rebuilding it: :meth:`EventIndex.extended` returns a NEW index (the old one
is never touched, so a request in flight keeps counting on it) made of the old sorted array, shared, and a
small delta index of the events added since, rebuilt from those alone; counts are the sum of both. Once the
delta outgrows ``max(4096, base // 32)`` events the two are merged into one sorted array again (a merge
costs a full sort; it comes once per that many events).
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import numpy as np

from recsys.sorted_unique import unique_sorted


def _compiled_counts():
    """This package's C counts (``_counts.count``), or None when the extension was not built."""
    try:
        from recsys.features._counts import count
    except ImportError:
        return None
    return count


_COUNT = _compiled_counts()
#: how :meth:`EventIndex.count_windows` counts for one query time: "compiled" (recsys/features/_counts.c) or "numpy"
COUNTS_ENGINE = "compiled" if _COUNT is not None else "numpy"


class EventIndex:
    """Sorted (key, time) pairs answering "how many events with key k happened in [t - w, t)" in O(log n)."""

    def __init__(self, keys: np.ndarray, times: np.ndarray) -> None:
        keys = np.asarray(keys, dtype=np.int64)
        times = np.asarray(times, dtype=np.int64)
        self.uniq_times = unique_sorted(times)
        self.stride = np.int64(len(self.uniq_times) + 1)
        self.key_vocab: np.ndarray | None = None
        if (int(keys.max(initial=0)) + 2) * int(self.stride) >= 2**62:  # sparse key space: compress it
            self.key_vocab = unique_sorted(keys)
            keys = np.searchsorted(self.key_vocab, keys)
        self.sorted = np.sort(keys * self.stride + np.searchsorted(self.uniq_times, times))
        self._delta: EventIndex | None = None      # events added by extended(), counted beside ``sorted``
        self._delta_raw: tuple[np.ndarray, np.ndarray] | None = None

    def __len__(self) -> int:
        return len(self.sorted) + (0 if self._delta is None else len(self._delta.sorted))

    def raw(self) -> tuple[np.ndarray, np.ndarray]:
        """Every (key, time) pair the index holds, as two int64 arrays (in no particular order)."""
        codes, ranks = np.divmod(self.sorted, self.stride)
        keys = codes if self.key_vocab is None else self.key_vocab[codes]
        times = self.uniq_times[ranks] if len(ranks) else np.zeros(0, np.int64)
        if self._delta_raw is not None:
            keys = np.concatenate([keys, self._delta_raw[0]])
            times = np.concatenate([times, self._delta_raw[1]])
        return keys.astype(np.int64), times.astype(np.int64)

    def extended(self, keys: np.ndarray, times: np.ndarray) -> EventIndex:
        """A new index holding these (key, time) pairs too; ``self`` is left as it was. Costs the size of the
        pairs added since the last merge, not of the index (module docstring)."""
        keys = np.asarray(keys, dtype=np.int64).reshape(-1)
        times = np.asarray(times, dtype=np.int64).reshape(-1)
        if not len(keys):
            return self
        if self._delta_raw is not None:
            keys = np.concatenate([self._delta_raw[0], keys])
            times = np.concatenate([self._delta_raw[1], times])
        if len(keys) > max(4096, len(self.sorted) // 32):  # merge: one sorted array again
            base_keys, base_times = copy.copy(self)._without_delta().raw()
            return EventIndex(np.concatenate([base_keys, keys]), np.concatenate([base_times, times]))
        new = copy.copy(self)
        new._delta, new._delta_raw = EventIndex(keys, times), (keys, times)
        return new

    def _without_delta(self) -> EventIndex:
        self._delta = self._delta_raw = None
        return self

    def _compress(self, keys: np.ndarray) -> np.ndarray:
        if self.key_vocab is None:
            return keys
        pos = np.clip(np.searchsorted(self.key_vocab, keys), 0, max(len(self.key_vocab) - 1, 0))
        hit = len(self.key_vocab) > 0 and self.key_vocab[pos] == keys
        return np.where(hit, pos, len(self.key_vocab)).astype(np.int64)

    def count(self, keys: np.ndarray, times: np.ndarray, window: int | None = None) -> np.ndarray:
        """Events with the query's key strictly before its time (and at or after ``time - window``)."""
        if self._delta is not None:
            return self._count(keys, times, window) + self._delta.count(keys, times, window)
        return self._count(keys, times, window)

    def _count(self, keys: np.ndarray, times: np.ndarray, window: int | None = None) -> np.ndarray:
        base = self._compress(np.asarray(keys, dtype=np.int64)) * self.stride
        times = np.asarray(times, dtype=np.int64)
        hi = np.searchsorted(self.sorted, base + np.searchsorted(self.uniq_times, times, "left"), "left")
        if window is None:
            lo = np.searchsorted(self.sorted, base, "left")
        else:
            lo = np.searchsorted(self.sorted, base + np.searchsorted(self.uniq_times, times - window, "left"), "left")
        return (hi - lo).astype(np.int64)

    def count_windows(self, keys: np.ndarray, times: np.ndarray, windows: Sequence[int | None],
                      key_range: tuple[int, int] | None = None) -> list[np.ndarray]:
        """:meth:`count` for several windows at once (the upper bound is searched once).

        ``key_range`` (lo, hi): every key lies in [lo, hi) (one user's keys), so only that block of the
        index is searched -- a few cache lines instead of a walk down the whole sorted array.
        """
        out = self._count_windows(keys, times, windows, key_range)
        if self._delta is not None:
            out = [a + b for a, b in zip(out, self._delta.count_windows(keys, times, windows, key_range),
                                         strict=True)]
        return out

    def _count_windows(self, keys: np.ndarray, times: np.ndarray, windows: Sequence[int | None],
                       key_range: tuple[int, int] | None = None) -> list[np.ndarray]:
        keys = np.asarray(keys, dtype=np.int64)
        if _COUNT is not None and self.key_vocab is None and keys.ndim == 1 and np.size(times) == 1 and \
                len(windows) <= 64 and all(w is None or w >= 0 for w in windows):  # one time: one C call
            win = np.array([-1 if w is None else w for w in windows], dtype=np.int64)
            out = np.empty((len(win), len(keys)), dtype=np.int64)
            lo, hi = key_range if key_range is not None else (-1, -1)
            _COUNT(self.sorted, lo, hi, int(self.stride), self.uniq_times, np.ascontiguousarray(keys),
                   int(np.asarray(times).reshape(-1)[0]), win, out)
            return list(out)
        return self._count_windows_numpy(keys, times, windows, key_range)

    def _count_windows_numpy(self, keys: np.ndarray, times: np.ndarray, windows: Sequence[int | None],
                             key_range: tuple[int, int] | None = None) -> list[np.ndarray]:
        """:meth:`count_windows` with NumPy (any shapes of keys and times)."""
        if key_range is None:
            codes, events = self._compress(keys), self.sorted
        else:
            codes, events = self._restrict(keys, *key_range)
            if not len(events):  # no event of any key in the range: every count is 0
                shape = np.broadcast_shapes(keys.shape, np.shape(times))
                return [np.zeros(shape, np.int64) for _ in windows]
        base = codes * self.stride
        times = np.asarray(times, dtype=np.int64)
        hi = np.searchsorted(events, base + np.searchsorted(self.uniq_times, times, "left"), "left")
        out, lo_all = [], None
        for window in windows:
            if window is None:
                if lo_all is None:
                    lo_all = np.searchsorted(events, base, "left")
                lo = lo_all
            else:
                lo = np.searchsorted(events, base + np.searchsorted(self.uniq_times, times - window, "left"), "left")
            out.append((hi - lo).astype(np.int64))
        return out

    def _restrict(self, keys: np.ndarray, key_lo: int, key_hi: int) -> tuple[np.ndarray, np.ndarray]:
        """Codes of ``keys`` (all in [key_lo, key_hi)) and the slice of ``sorted`` holding all their events;
        counts within the slice equal counts in the whole array."""
        if self.key_vocab is None:
            code_lo, code_hi, codes = key_lo, key_hi, keys
        else:
            code_lo, code_hi = (int(c) for c in np.searchsorted(self.key_vocab, [key_lo, key_hi]))
            if code_lo == code_hi:  # no key of the range has events
                return np.full(len(keys), len(self.key_vocab), np.int64), self.sorted[:0]
            vocab = self.key_vocab[code_lo:code_hi]
            pos = np.searchsorted(vocab, keys)
            hit = np.zeros(len(keys), bool) if not len(vocab) else vocab[np.minimum(pos, len(vocab) - 1)] == keys
            codes = np.where(hit, pos + code_lo, len(self.key_vocab)).astype(np.int64)
        a, b = np.searchsorted(self.sorted, [code_lo * self.stride, code_hi * self.stride])
        return codes, self.sorted[a:b]


def point_in_time_counts(event_keys, event_times, query_keys, query_times, window: int | None = None) -> np.ndarray:
    """One-shot :class:`EventIndex` count: events of the same key in ``[t - window, t)`` for each query."""
    return EventIndex(event_keys, event_times).count(query_keys, query_times, window)
