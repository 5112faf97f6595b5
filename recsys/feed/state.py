"""Everything a Recommender serves from, in one object that updates replace as a whole.

A request reads one :class:`ServingState` from start to end; ``add_items`` / ``remove_items`` build
a new one and swap it in, so a request never sees half an update.
"""

from __future__ import annotations

import warnings
from dataclasses import asdict, dataclass, field, replace
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from recsys.errors import ConfigError
from recsys.feed.catalogue import Catalogue
from recsys.feed.fallback import COLD_START_MODES, PopularItems
from recsys.feed.rules import BusinessRules
from recsys.feed.users import UserState

if TYPE_CHECKING:  # the component types only: torch and the models load where they are used
    from recsys.features.pipeline import FeaturePipeline
    from recsys.features.ranking_features import RankingFeatureBuilder
    from recsys.index.base import ItemIndex
    from recsys.models.rankers.base import Ranker
    from recsys.models.two_tower import TwoTowerModel

__all__ = ["ServingConfig", "ServingState", "builder_items", "builder_events",
           "objective_scores_by_partner", "EVENT_COLUMNS"]

EVENT_COLUMNS = ("user_id", "item_id", "timestamp", "event_type", "media_id")
UNKNOWN_PARTNER_MODES = ("refuse", "shared")
NO_PARTNER_MODES = ("auto", "catalogue", "shared", "refuse")


@dataclass(frozen=True)
class ServingConfig:
    """Request-time settings (stored in the bundle).

    ``n_candidates``: items retrieved and ranked per request; ``default_objective``: for partners
    without one; ``cold_start``: "auto" (features-only tower when the request carries profile or
    partner, else popular), "features" or "popular"; ``allow_fraction``: pools smaller than this
    share of the catalogue are searched as an allow-list, larger ones by over-fetching and filtering.

    Partner separation (see :mod:`recsys.feed.partners`): ``unknown_partner`` says what a request for a
    partner id the Recommender does not know gets: "refuse" (a DataValidationError naming the closest known
    partner) or "shared" (only the items every known partner may show); ``no_partner`` what a request without
    a partner (``media_id=None``) gets: "auto" (the default: "refuse" when some partner's pool is restricted,
    else "catalogue", so no partner never widens what is served), "catalogue" (every item: the owner's own
    pages, offline evaluation), "shared" or "refuse"; ``trust_context_segment``: whether an unknown user's
    ``context['segment']`` may unlock invite-only items (a known user's segment always comes from the users table).
    ``item_to_item``: candidates the item-to-item channel (:mod:`recsys.feed.item_table`) adds to each request
    beside the two-tower's ``n_candidates`` (0: the two-tower alone); the ranker scores both alike.
    ``friends``: candidates the friends channel (:mod:`recsys.feed.friends`: what the user's friends engaged
    with on the same partner) adds to each request (0: off).
    ``objective_price``: the price GMV and commission objectives count: "paid" (the list price less the item's
    coupon and the partner's benefits, :meth:`ServingState.paid_price`) or "list" (what bundles saved before
    benefits existed load with, so their feeds stay as they were recorded).
    """

    n_candidates: int = 300
    rules: BusinessRules = field(default_factory=BusinessRules)
    default_objective: str = "commission"
    cold_start: str = "auto"
    segment_column: str = "segment"
    allow_fraction: float = 0.3
    unknown_partner: str = "refuse"
    no_partner: str = "auto"
    trust_context_segment: bool = False
    objective_price: str = "paid"
    item_to_item: int = 0
    friends: int = 0

    def __post_init__(self) -> None:
        if self.objective_price not in ("paid", "list"):
            raise ConfigError(f"objective_price must be 'paid' or 'list', got {self.objective_price!r}")
        n = self.n_candidates
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
            raise ConfigError(f"n_candidates must be a positive int, got {n!r}")
        for name in ("item_to_item", "friends"):
            extra = getattr(self, name)
            if isinstance(extra, bool) or not isinstance(extra, (int, np.integer)) or extra < 0:
                raise ConfigError(f"{name} must be a non-negative int (candidates the {name.replace('_', '-')} "
                                  f"channel adds to each request; 0 turns it off), got {extra!r}")
        if self.cold_start not in COLD_START_MODES:
            raise ConfigError(f"cold_start must be one of {COLD_START_MODES}, got {self.cold_start!r}")
        if self.unknown_partner not in UNKNOWN_PARTNER_MODES:
            raise ConfigError(f"unknown_partner must be one of {UNKNOWN_PARTNER_MODES} (what a request for a partner "
                              f"id this Recommender does not know gets), got {self.unknown_partner!r}")
        if self.no_partner not in NO_PARTNER_MODES:
            raise ConfigError(f"no_partner must be one of {NO_PARTNER_MODES} (what a request with media_id=None "
                              f"gets), got {self.no_partner!r}")
        if not isinstance(self.trust_context_segment, (bool, np.bool_)):
            raise ConfigError(f"trust_context_segment must be True or False, got {self.trust_context_segment!r}")
        object.__setattr__(self, "trust_context_segment", bool(self.trust_context_segment))
        from recsys.models.rankers.objectives import normalise_objective

        object.__setattr__(self, "default_objective", normalise_objective(self.default_objective))

    def to_dict(self) -> dict:
        d = asdict(self)
        d["rules"] = self.rules.to_dict()
        return d

    @classmethod
    def from_dict(cls, d: dict) -> ServingConfig:
        d = dict(d)
        d["rules"] = BusinessRules.from_dict(d.get("rules", {}))
        d.setdefault("objective_price", "list")  # saved before benefits: objectives counted the list price
        return cls(**d)


@dataclass
class ServingState:
    """Components, catalogue, per-user state and partner settings behind every request."""

    pipeline: FeaturePipeline
    model: TwoTowerModel
    index: ItemIndex
    ranker: Ranker | None
    builder: RankingFeatureBuilder | None
    catalogue: Catalogue
    item_emb: np.ndarray
    users: UserState
    pools: dict[str, np.ndarray]
    objectives: dict[str, str]
    popular: PopularItems
    config: ServingConfig
    as_of: pd.Timestamp
    tables: dict[str, pd.DataFrame]
    vocab_to_pos: np.ndarray | None
    builder_params: dict | None = None
    open_pools: frozenset = frozenset()  # partners whose pool is the whole catalogue: new items join them
    filters_cache: dict = field(default_factory=dict)
    arrays: Any = None  # (CandidateFeatures, matrix columns) once built, False when the ranker cannot use them
    folded: Any = None  # the checked FoldedUserTower once built, False when the torch forward serves
    partner_log: Any = None  # (events, users, partners and per-partner histories): recsys.feed.partners
    item_table: Any = None  # the item-to-item ItemTable (recsys.feed.item_table): for the channel, or a ranker
    # trained on its score (recsys.feed.item_score)
    friend_graph: Any = None  # the friends channel's FriendGraph (recsys.feed.friends) when config turns it on

    def evolve(self, **changes) -> ServingState:
        """A copy with ``changes``. The ranking feature arrays carry over only while the items' attributes do:
        same builder and the very same items table (stock flags and removals keep it; added or replaced items
        make a new one), so an update that changes a price can never serve stale features. The folded user
        tower carries over while the model does."""
        same_items = "builder" not in changes and changes.get("catalogue", self.catalogue).frame is self.catalogue.frame
        return replace(self, filters_cache={}, arrays=self.arrays if same_items else None,
                       folded=self.folded if "model" not in changes else None, **changes)

    def index_size(self) -> int:
        """Live items in the index (cached: every index update comes with a new state)."""
        hit = self.filters_cache.get("index_size")
        if hit is None:
            hit = self.filters_cache["index_size"] = len(self.index)
        return hit

    @property
    def as_of_ns(self) -> int:
        """The serving time (``as_of``) in int64 nanoseconds."""
        return int(np.array([self.as_of.to_datetime64()], dtype="datetime64[ns]").astype(np.int64)[0])

    def _arrays(self):
        if self.arrays is None:
            self.arrays = _candidate_arrays(self.ranker, self.builder, self.catalogue.ids, self.as_of) or False
        return self.arrays or None

    def paid_price(self, pos: np.ndarray, media: np.ndarray, at_ns: np.ndarray | int) -> np.ndarray:
        """The price a buyer pays for each row's item (position ``pos``) on its partner at its time: the list price
        less the largest of the item's own coupon and the partner benefits valid then
        (:mod:`recsys.features.benefits`); what GMV and commission objectives count (see :meth:`objective_price`)."""
        from recsys.features.benefits import BenefitTable, price_after_benefit

        hit = self.filters_cache.get("benefits")
        if hit is None:
            frame, cat = self.tables.get("benefits"), self.catalogue
            table = BenefitTable.build(frame, cat.index, strict=False) if frame is not None and len(frame) else None
            coupon = cat.frame["coupon"].to_numpy(np.float64) if "coupon" in cat.frame.columns else \
                np.zeros(len(cat))
            hit = self.filters_cache["benefits"] = (table, coupon)
        table, coupon = hit
        price = self.catalogue.price[pos]
        benefit = np.zeros(len(pos)) if table is None else table.best(pos, price, media, at_ns)
        return price_after_benefit(price, coupon[pos], benefit)[1]

    def objective_price(self, pos: np.ndarray, media: np.ndarray, at_ns: np.ndarray | int) -> np.ndarray:
        """The price GMV and commission objectives count: :meth:`paid_price`, or the list price for a bundle saved
        before benefits existed (``config.objective_price == "list"``)."""
        if self.config.objective_price == "list":
            return self.catalogue.price[pos]
        return self.paid_price(pos, media, at_ns)

    def candidate_features(self):
        """The ranker's features as arrays for requests at ``as_of``
        (:class:`~recsys.features.candidate_features.CandidateFeatures`), or None when the ranker reads frames."""
        hit = self._arrays()
        return None if hit is None else hit[0]

    def ranking_columns(self) -> list[str]:
        """Columns of the serving feature matrix: the ranker's, then the reasons' ablation sources it lacks."""
        return self._arrays()[1]

    def folded_tower(self):
        """The user tower in NumPy (:class:`~recsys.models.folded_tower.FoldedUserTower`), checked once per model
        against the torch forward on a sample of known users and one unknown user; None when the tower cannot
        be folded or the check fails (then the torch forward serves, and a warning says why)."""
        if self.folded is None:
            self.folded = fold_user_tower(self) or False
        return self.folded or None


def _candidate_arrays(ranker: Any, builder: Any, item_ids: np.ndarray, as_of: pd.Timestamp):
    """(CandidateFeatures, matrix columns) when the ranker scores matrices and the builder's features can be
    computed as arrays; None otherwise (those requests go through the builder's frames)."""
    from recsys.features.candidate_features import CandidateFeatures
    from recsys.features.ranking_features import RankingFeatureBuilder

    if ranker is None or not ranker.predicts_arrays or not isinstance(builder, RankingFeatureBuilder):
        return None
    features = CandidateFeatures.build(builder, item_ids, as_of)
    columns = list(ranker.columns_)
    if not features.supports(columns):
        return None
    extra = sorted(c for c in features.names if c.startswith("category_") and c.endswith(("_ctr", "_cvr"))
                   and c not in set(columns))
    return features, columns + extra


BUILDER_ITEM_COLUMNS = ("item_id", "category", "brand", "shop", "price", "commission_rate", "coupon")


def _objects(df: pd.DataFrame, columns) -> pd.DataFrame:
    out = df[[c for c in columns if c in df.columns]].copy()
    for c in out.columns:
        dt = out[c].dtype
        if not (pd.api.types.is_numeric_dtype(dt) or pd.api.types.is_datetime64_any_dtype(dt)):
            out[c] = out[c].to_numpy(dtype=object)
    return out.reset_index(drop=True)


def builder_items(items: pd.DataFrame) -> pd.DataFrame:
    """The item columns the ranking feature builder reads, strings as numpy objects (fast row lookups)."""
    return _objects(items, BUILDER_ITEM_COLUMNS)


def builder_events(events: pd.DataFrame) -> pd.DataFrame:
    """The event columns the ranking feature builder reads, strings as numpy objects (same values)."""
    return _objects(events, EVENT_COLUMNS)


def objective_scores_by_partner(preds: pd.DataFrame, rows: pd.DataFrame, objectives: dict[str, str],
                                default: str) -> np.ndarray:
    """Each row scored by its partner's objective (one vectorised call per objective, not per row)."""
    from recsys.models.rankers.objectives import objective_scores

    media = rows["media_id"].to_numpy(dtype=object)
    names = np.array([objectives.get(m, default) for m in pd.unique(media)], dtype=object)
    per_row = names[pd.Index(pd.unique(media)).get_indexer(media)] if len(media) else names[:0]
    price, rate = rows["price"].to_numpy(np.float64), rows["commission_rate"].to_numpy(np.float64)
    out = np.zeros(len(rows))
    for name in pd.unique(per_row):
        m = per_row == name
        part = preds.iloc[np.flatnonzero(m)] if not m.all() else preds
        out[m] = objective_scores(part, name, price=price[m], commission_rate=rate[m])
    return out


def pool_masks(media_pools: pd.DataFrame | None, catalogue: Catalogue) -> dict[str, np.ndarray]:
    """media_id -> bool mask over catalogue positions (partners absent from the table have no pool)."""
    if media_pools is None or not len(media_pools):
        return {}
    out = {}
    for media, part in media_pools.groupby(media_pools["media_id"].astype(str), sort=True):
        mask = np.zeros(len(catalogue), bool)
        pos = catalogue.positions(part["item_id"].to_numpy())
        mask[pos[pos >= 0]] = True
        out[str(media)] = mask
    return out


def vocab_positions(pipeline: Any, catalogue: Catalogue) -> np.ndarray:
    """Catalogue position of each item of the pipeline's item vocabulary; -1 for the vocabulary's rows of unknown
    items (a live event on an item added after training puts one in a user's history)."""
    pos = catalogue.positions(np.asarray(pipeline.items_.values_))
    return np.concatenate([pos, np.full(max(int(getattr(pipeline.items_, "size", 0)) - len(pos), 0), -1, pos.dtype)])


def sync_index(index: Any, catalogue: Catalogue, positions: np.ndarray | None = None) -> None:
    """Push stock and eligibility of ``positions`` (default: all) into the index."""
    pos = np.arange(len(catalogue)) if positions is None else np.asarray(positions)
    pos = pos[catalogue.alive[pos]]
    if len(pos):
        index.set_item_attributes(catalogue.ids[pos], in_stock=catalogue.in_stock[pos],
                                  eligibility=list(catalogue.eligibility[pos]))


FOLD_CHECK_USERS = 64  # known users (plus one unknown) on which a folded tower must match the torch forward
FOLD_TOLERANCE = 1e-5


def fold_user_tower(state: ServingState):
    """A checked :class:`~recsys.models.folded_tower.FoldedUserTower` for ``state``'s model, or None."""
    import torch

    from recsys.models.folded_tower import FoldedUserTower

    model = state.model
    if model.training:
        model.eval()
    if not FoldedUserTower.supports(model):
        return None
    folded = FoldedUserTower(model)
    users = state.users
    rows = np.r_[np.arange(min(len(users.ids), FOLD_CHECK_USERS)), -1].astype(np.int64)
    ids = np.asarray([*users.ids[rows[:-1]].tolist(), "__recsys_fold_check_unknown_user__"], dtype=object)
    media = list(state.pools)[:1] or [None]
    media_ids = [media[0] if i % 2 else None for i in range(len(rows))]
    args = (ids, rows, media_ids, [None] * len(rows))
    try:
        with torch.inference_mode():
            want = model.user_embeddings(users.tower_inputs(*args)).cpu().numpy()
        got = folded(users.tower_arrays(*args))
    except Exception as e:  # a check that cannot run must not take serving down: torch serves
        warnings.warn(f"the NumPy user tower could not be checked ({type(e).__name__}: {e}); serving with the torch "
                      "forward", RuntimeWarning, stacklevel=3)
        return None
    err = float(np.abs(got - want).max()) if want.size else 0.0
    if got.shape != want.shape or not err <= FOLD_TOLERANCE:
        warnings.warn(f"the NumPy user tower differs from the torch forward by {err:.2e} (> {FOLD_TOLERANCE}); "
                      "serving with the torch forward", RuntimeWarning, stacklevel=3)
        return None
    return folded
