"""The event simulation of the synthetic affiliate world: feed pages, impressions, clicks, carts, favs, purchases.

Day by day, users open a partner's feed (a *session* of a few impressions). Each slot draws a few
candidates from the partner's product pool in proportion to item popularity and keeps one with a
Gumbel-max draw on the user's true affinity (a mild popularity + interest bias). Clicks and
purchases come from :class:`~recsys.datasets.synthetic_truth.WorldTruth`. Sessions are processed in
blocks of numpy arrays, so time and memory grow linearly with the number of events.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from recsys.datasets.synthetic_world import DAY, HOUR_WEIGHTS, StaticWorld
from recsys.errors import ConfigError
from recsys.progress import show_progress

EVENT_CODES = {"impression": 0, "click": 1, "cart": 2, "fav": 3, "purchase": 4}
SECOND = 1_000_000_000
SESSIONS_PER_BLOCK = 20_000
COLUMNS = ("user_id", "item_id", "timestamp", "event_type", "media_id", "value", "impression_id", "position")


class _Pools:
    """Per partner and segment (regular / vip), the eligible items with cumulative popularity weights."""

    def __init__(self, world: StaticWorld) -> None:
        pools = world.media_pools
        codes = pd.Index(world.truth.media_ids).get_indexer(pools["media_id"].to_numpy())
        items = pools["item_id"].to_numpy()
        pop = world.truth.item_popularity
        self.items: list[list[np.ndarray]] = []
        self.cum: list[list[np.ndarray]] = []
        self.guide: list[list[np.ndarray]] = []
        for m in range(len(world.truth.media_ids)):
            pool = np.sort(items[codes == m])
            regular = pool[~world.item_vip[pool]]
            self.items.append([regular, pool])
            cums = [np.cumsum(pop[regular]), np.cumsum(pop[pool])]
            self.cum.append(cums)
            self.guide.append([_guide_table(c) for c in cums])

    def sample(self, media: np.ndarray, vip: np.ndarray, n_cand: int, rng: np.random.Generator) -> np.ndarray:
        """Popularity-proportional candidates (n_slots, n_cand); -1 where the pool is empty."""
        key = media.astype(np.int64) * 2 + vip
        order = np.argsort(key, kind="stable")
        sorted_key = key[order]
        cand = np.full((len(media), n_cand), -1, dtype=np.int64)
        for g in np.unique(sorted_key):
            rows = order[np.searchsorted(sorted_key, g, "left"):np.searchsorted(sorted_key, g, "right")]
            pool, cum = self.items[g // 2][g % 2], self.cum[g // 2][g % 2]
            if len(pool) == 0:
                continue
            r = rng.random((len(rows), n_cand)) * cum[-1]
            cand[rows] = pool[_inverse_cdf(cum, self.guide[g // 2][g % 2], r)]
        return cand


def _guide_table(cum: np.ndarray, per_item: int = 4) -> np.ndarray:
    """Chen-Asau guide table: for grid point j, the first index whose cumulative weight exceeds it."""
    size = max(1, per_item * len(cum))
    if len(cum) == 0:
        return np.zeros(1, np.int64)
    return np.searchsorted(cum, np.arange(size) * (cum[-1] / size), side="right")


def _inverse_cdf(cum: np.ndarray, guide: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Exactly ``searchsorted(cum, q, side="right")`` (clipped), but O(1) expected per query."""
    last = len(cum) - 1
    idx = guide[np.minimum((q * (len(guide) / cum[-1])).astype(np.int64), len(guide) - 1)]
    flat, qf = idx.reshape(-1), q.reshape(-1)
    act = np.nonzero(cum[np.minimum(flat, last)] <= qf)[0]
    while act.size:
        flat[act] += 1
        act = act[(flat[act] < last) & (cum[np.minimum(flat[act], last)] <= qf[act])]
    return np.minimum(flat, last).reshape(q.shape)


def simulate_events(world: StaticWorld, *, n_events: int, n_days: int, start_ns: int,
                    rng: np.random.Generator, progress: bool = True) -> pd.DataFrame:
    """Simulate about ``n_events`` events over ``n_days`` days; returns the events table sorted by time."""
    truth, params = world.truth, world.truth.params
    pools = _Pools(world)
    kind_weight = world.media["kind"].map({"content_app": 1.0, "shopping_guide": 0.6, "influencer": 0.8})
    media_weight = world.audience_matrix * kind_weight.to_numpy()[None, :]
    day_ns = int(DAY.astype(np.int64))
    end_ns = start_ns + n_days * day_ns
    weekday = (np.arange(n_days) + (start_ns // day_ns) + 3) % 7  # 1970-01-01 was a Thursday; Monday = 0
    day_factor = np.where(weekday >= 5, 1.15, 1.0)
    state = {"events": 0, "impressions": 0, "next_imp": 0, "bought": np.empty(0, np.int64)}
    chunks: list[dict[str, np.ndarray]] = []
    for d in _progress(range(n_days), progress, "simulating days"):
        day_start = start_ns + d * day_ns
        ratio = state["events"] / state["impressions"] if state["impressions"] else 1.04
        todo = max(0.0, (n_events - state["events"]) / ratio) * day_factor[d] / day_factor[d:].sum()
        n_sessions = int(round(todo / params.page_length))
        if n_sessions == 0:
            continue
        users, ts = _sessions(world, n_sessions, day_start, day_ns, rng)
        for lo in range(0, n_sessions, SESSIONS_PER_BLOCK):
            sl = slice(lo, lo + SESSIONS_PER_BLOCK)
            media = _pick_media(media_weight[users[sl]], rng)
            block = _block(world, pools, users[sl], ts[sl], media, end_ns, state, rng)
            chunks.append(block)
            state["events"] += len(block["user_id"])
            state["impressions"] += int((block["event_type"] == 0).sum())
    if not chunks:
        raise ConfigError(f"the world produced no events (n_events={n_events}, n_days={n_days}); "
                          "raise n_events.")
    return _assemble(chunks, truth.media_ids)


def _progress(it, enabled: bool, desc: str):
    if not (enabled and show_progress()):
        return it
    from tqdm.auto import tqdm

    return tqdm(it, desc=desc)


def _sessions(world: StaticWorld, n: int, day_start: int, day_ns: int, rng: np.random.Generator):
    """Who opens a feed today and when: activity-weighted users (signed up by then), evening-heavy hours."""
    signup = world.user_signup_ns
    alive = np.clip((day_start + day_ns - signup) / day_ns, 0.0, 1.0)
    w = world.truth.user_activity * alive
    users = rng.choice(len(w), size=n, p=w / w.sum())
    hour = rng.choice(24, size=n, p=HOUR_WEIGHTS / HOUR_WEIGHTS.sum())
    ts = day_start + ((hour + rng.random(n)) * 3600 * SECOND).astype(np.int64)
    lo = np.maximum(signup[users], day_start)
    late = lo > day_start  # signed up today: sessions only after signing up
    ts[late] = lo[late] + (rng.random(int(late.sum())) * (day_start + day_ns - lo[late])).astype(np.int64)
    return users.astype(np.int64), ts


def _pick_media(weights: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    cum = np.cumsum(weights, axis=1)
    r = rng.random(len(weights)) * cum[:, -1]
    return np.minimum((cum <= r[:, None]).sum(axis=1), weights.shape[1] - 1).astype(np.int64)


def _block(world: StaticWorld, pools: _Pools, users, ts, media, end_ns: int, state: dict,
           rng: np.random.Generator) -> dict[str, np.ndarray]:
    """One block of sessions: feed pages (impressions), then clicks and what follows them."""
    truth, p = world.truth, world.truth.params
    length = np.clip(1 + rng.poisson(p.page_length - 1, len(users)), 1, p.max_position)
    sess = np.repeat(np.arange(len(users)), length)
    pos = np.arange(len(sess)) - np.repeat(np.cumsum(length) - length, length)
    u, m = users[sess], media[sess]
    t = ts[sess] + pos * 4 * SECOND + (rng.random(len(sess)) * 3.9 * SECOND).astype(np.int64)
    cand = pools.sample(m, world.user_vip[u].astype(np.int64), p.candidates_per_slot, rng)
    valid = (cand >= 0) & (world.item_available_ns[np.maximum(cand, 0)] <= t[:, None])
    # truth.affinity, with each page's user row gathered once (slots of a page are contiguous)
    user_rows = truth.user_factors[users][sess]
    aff = p.affinity_scale * np.einsum("nd,ncd->nc", user_rows, truth.item_factors[np.maximum(cand, 0)])
    score = p.interest_bias * aff - np.log(-np.log(rng.random(cand.shape) + 1e-12) + 1e-12)
    score[~valid] = -np.inf
    pick = score.argmax(axis=1)
    item = cand[np.arange(len(cand)), pick]
    aff = aff[np.arange(len(cand)), pick]
    ok = valid.any(axis=1) & (t < end_ns)
    _, first = np.unique(sess[ok] * np.int64(len(truth.price)) + item[ok], return_index=True)
    keep = np.nonzero(ok)[0][np.sort(first)]  # one impression per item per page
    u, i, m, t, pos, aff = u[keep], item[keep], m[keep], t[keep], pos[keep], aff[keep]
    imp_id = state["next_imp"] + np.arange(len(u), dtype=np.int64)
    state["next_imp"] += len(u)
    clicked = rng.random(len(u)) < truth.click_probability(u, i, position=pos, media=m, affinity=aff)
    c = np.nonzero(clicked)[0]
    return _after_click(world, u, i, m, t, pos, imp_id, c, aff[c], end_ns, state, rng)


def _after_click(world: StaticWorld, u, i, m, t, pos, imp_id, c, aff_c, end_ns: int, state: dict,
                 rng: np.random.Generator) -> dict[str, np.ndarray]:
    truth, p = world.truth, world.truth.params
    uc, ic, mc = u[c], i[c], m[c]
    key = uc * np.int64(len(truth.price)) + ic
    p_buy = truth.purchase_probability(uc, ic, media=mc, affinity=aff_c)
    p_buy = np.where(np.isin(key, state["bought"]), p_buy * p.repeat_purchase_factor, p_buy)
    buy = rng.random(len(c)) < p_buy
    cart = rng.random(len(c)) < np.where(buy, p.cart_if_purchase, p.cart_if_no_purchase)
    fav = rng.random(len(c)) < np.where(buy, p.fav_if_purchase, p.fav_if_no_purchase)
    t_click = t[c] + SECOND + (rng.exponential(12.0, len(c)) * SECOND).astype(np.int64)
    t_cart = t_click + 3 * SECOND + (rng.exponential(60.0, len(c)) * SECOND).astype(np.int64)
    t_fav = t_click + 2 * SECOND + (rng.exponential(30.0, len(c)) * SECOND).astype(np.int64)
    t_buy = np.where(cart, t_cart, t_click) + 20 * SECOND + (rng.exponential(300.0, len(c)) * SECOND).astype(np.int64)
    state["bought"] = np.union1d(state["bought"], key[buy])
    parts = [(np.arange(len(u)), t, 0, np.ones(len(u), bool)), (c, t_click, 1, np.ones(len(c), bool)),
             (c, t_cart, 2, cart), (c, t_fav, 3, fav), (c, t_buy, 4, buy)]
    out: dict[str, list[np.ndarray]] = {k: [] for k in COLUMNS}
    for rows, times, code, mask in parts:
        mask = mask & (times < end_ns)  # the log ends with the window, like a real extract
        r = rows[mask]
        out["user_id"].append(u[r].astype(np.int32))
        out["item_id"].append(i[r].astype(np.int32))
        out["timestamp"].append(times[mask])
        out["event_type"].append(np.full(len(r), code, np.int8))
        out["media_id"].append(m[r].astype(np.int16))
        out["value"].append(truth.effective_price(i[r]) if code == 4 else np.full(len(r), np.nan))
        out["impression_id"].append(imp_id[r])
        out["position"].append(pos[r].astype(np.int16))
    return {k: np.concatenate(v) for k, v in out.items()}


def _assemble(chunks: list[dict[str, np.ndarray]], media_ids: tuple[str, ...]) -> pd.DataFrame:
    """Concatenate blocks and sort by time (stable: an event never precedes its impression).

    Column by column, so that peak memory stays near one copy of the blocks plus the final frame.
    """
    import pyarrow as pa

    order = np.argsort(np.concatenate([ch["timestamp"] for ch in chunks]), kind="stable")
    dtypes = {"user_id": np.int64, "item_id": np.int64, "timestamp": "datetime64[ns]", "value": np.float64,
              "impression_id": np.int64, "position": np.int16}
    data: dict[str, object] = {}
    for k in COLUMNS:
        col = np.concatenate([ch.pop(k) for ch in chunks])[order]  # pop frees block memory as we go
        if k == "event_type":
            data[k] = pd.Categorical.from_codes(col, categories=list(EVENT_CODES))
        elif k == "media_id":
            names = pa.DictionaryArray.from_arrays(pa.array(col.astype(np.int32)), pa.array(list(media_ids)))
            data[k] = names.dictionary_decode().to_pandas()
        else:
            data[k] = col.astype(dtypes[k], copy=False)
        del col
    return pd.DataFrame(data, copy=False)
