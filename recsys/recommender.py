"""The Recommender: the one object a media app holds to get a "猜你喜欢" feed.

>>> rec = recsys.load("bundles/guess-you-like")                        # doctest: +SKIP
>>> feed = rec.recommend(user_id, k=20, media_id="guide-0")            # doctest: +SKIP
>>> feed.items[["item_id", "score", "reason"]]                         # doctest: +SKIP

It composes the fitted feature pipeline, the two-tower model, the item index and the ranker:
retrieve ``n_candidates`` items with the user tower and the index -> rank them with the partner's
objective (clicks, purchases, GMV or commission) -> apply the business rules
(:mod:`recsys.feed.rules`) -> the top ``k`` with a reason each (:mod:`recsys.feed.reasons`).
Users without history take the cold-start path (:mod:`recsys.feed.fallback`); unknown user or
item ids never raise in a serving call, they fall back and the result says so. An unknown partner id
never widens what is served: it is refused, or served only what every partner may show
(:mod:`recsys.feed.partners`).

Build one with :meth:`Recommender.fit` (trains every component with small defaults) or
:meth:`Recommender.from_components` (components trained elsewhere, e.g. by ``recsys train``);
save it with :meth:`save` and load it with :func:`recsys.load`.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from recsys.errors import ConfigError, DataValidationError
from recsys.feed import request_checks as checks
from recsys.feed.build import build_state
from recsys.feed.engine import partner_objective, run_batch
from recsys.feed.output import OUTPUT_COLUMNS, score_kind
from recsys.feed.request import Request
from recsys.feed.result import Feed
from recsys.feed.rules import BusinessRules
from recsys.feed.state import ServingConfig, ServingState
from recsys.fit.components import TrainSettings, train_components
from recsys.ids import coerce_id, id_kind

__all__ = ["Recommender", "Feed", "OUTPUT_COLUMNS"]

MAX_K = checks.MAX_K  # the longest feed one request may ask for
UNKNOWN_USER = checks.UNKNOWN_USER


class Recommender:
    """Retrieve -> rank -> rules -> reasons, behind ``recommend`` / ``recommend_batch`` / ``similar_items``.

    Keyword settings (stored in the bundle): ``n_candidates`` retrieved and ranked per request;
    ``max_per_category`` items of one category in a feed (None: no cap); ``repeat_purchase_categories``
    whose bought items may be recommended again; ``require_in_stock``; ``default_objective`` for
    partners without one; ``cold_start`` ("auto", "features" or "popular"); ``segment_column`` of the
    users table; ``train`` the :class:`~recsys.fit.components.TrainSettings` used by :meth:`fit`.
    Partner separation (:mod:`recsys.feed.partners`): ``unknown_partner`` "refuse" (a misspelt or unknown
    media_id raises DataValidationError naming the closest known one) or "shared" (served only the items every
    partner may show); ``no_partner`` for ``media_id=None``: "auto" (the default: refused, with a
    DataValidationError saying how to fix it, when some partner's pool is restricted, so no partner never widens
    what is served; the whole catalogue when none is), "catalogue" (every item: the network's own pages and
    offline evaluation), "shared" or "refuse";
    ``trust_context_segment``: let an unknown user's ``context['segment']`` unlock invite-only items (a known
    user's segment always comes from the users table).
    ``item_to_item``: candidates a second recall channel adds to each request beside the two-tower's
    ``n_candidates``: the neighbours of the user's recent items in an item-to-item table built from the serving
    log (:mod:`recsys.feed.item_table`); their rows say ``source == "item_to_item"`` and their reason names the
    viewed item that brought them; the ranker then also learns from the channel's score, ``item_to_item_score``
    (:mod:`recsys.feed.item_score`). 0 (the default) retrieves with the two-tower alone. ``friends``: candidates a
    friends channel adds: what most of the user's friends (``context['friends']``, else the social table) engaged
    with on the same partner (:mod:`recsys.feed.friends`); ``source == "friends"``. 0 (the default): off.
    """

    def __init__(self, *, n_candidates: int = 300, max_per_category: int | None = 3,
                 repeat_purchase_categories: Iterable[str] = (), require_in_stock: bool = True,
                 default_objective: str = "commission", cold_start: str = "auto", segment_column: str = "segment",
                 train: TrainSettings | None = None, unknown_partner: str = "refuse", no_partner: str = "auto",
                 trust_context_segment: bool = False, item_to_item: int = 0, friends: int = 0) -> None:
        self.n_candidates = n_candidates
        self.max_per_category = max_per_category
        self.repeat_purchase_categories = tuple(repeat_purchase_categories)
        self.require_in_stock = require_in_stock
        self.default_objective = default_objective
        self.cold_start = cold_start
        self.segment_column = segment_column
        self.train = train
        self.unknown_partner = unknown_partner
        self.no_partner = no_partner
        self.trust_context_segment = trust_context_segment
        self.item_to_item = item_to_item
        self.friends = friends

    # ----- building ------------------------------------------------------------------------------
    def _config(self) -> ServingConfig:
        rules = BusinessRules(max_per_category=self.max_per_category,
                              repeat_purchase_categories=frozenset(self.repeat_purchase_categories),
                              require_in_stock=self.require_in_stock)
        return ServingConfig(n_candidates=self.n_candidates, rules=rules, default_objective=self.default_objective,
                             cold_start=self.cold_start, segment_column=self.segment_column,
                             unknown_partner=self.unknown_partner, no_partner=self.no_partner,
                             trust_context_segment=self.trust_context_segment, item_to_item=self.item_to_item,
                             friends=self.friends)

    def fit(self, events: pd.DataFrame, items: pd.DataFrame, *, users: pd.DataFrame | None = None,
            social: pd.DataFrame | None = None, media: pd.DataFrame | None = None,
            media_pools: pd.DataFrame | None = None, benefits: pd.DataFrame | None = None,
            progress: bool | None = None) -> Recommender:
        """Train every component on training tables (small defaults, see ``train``) and get ready to serve.

        The tables are first checked against the data contract with the same function as ``recsys train``
        (:func:`recsys.features.schema.validate_tables`): a broken contract raises ``DataValidationError``.
        ``train_summary_["ranker"]`` says whether a ranker was trained and, when not, why. ``benefits``: partner
        coupons (:mod:`recsys.features.benefits`): the price after them is a ranker feature and what GMV and
        commission objectives count."""
        config = self._config()
        from recsys.features.schema import validate_tables

        t = validate_tables(events=events, items=items, users=users, social=social, media=media,
                            media_pools=media_pools, benefits=benefits)
        events, items, users, social, media, media_pools, benefits = (
            t.get(n) for n in ("events", "items", "users", "social", "media", "media_pools", "benefits"))
        parts = train_components(events, items, users, social, settings=self.train,
                                 segment_column=self.segment_column, progress=progress, benefits=benefits,
                                 item_to_item_feature=self.item_to_item > 0)
        from recsys.storage.bundle import data_hash

        self._adopt(build_state(pipeline=parts["pipeline"], model=parts["model"], index=parts["index"],
                                ranker=parts["ranker"], builder=parts["feature_builder"], items=items, events=events,
                                users=users, social=social, media=media, media_pools=media_pools, config=config,
                                item_emb=parts["item_embeddings"], builder_params=parts["builder_params"],
                                benefits=benefits),
                    data_hash({"events": events, "items": items, "users": users, "social": social}))
        self.train_summary_ = parts["train_summary"]
        return self

    @classmethod
    def from_components(cls, *, pipeline: Any, model: Any, items: pd.DataFrame, events: pd.DataFrame,
                        index: Any = None, ranker: Any = None, feature_builder: Any = None,
                        users: pd.DataFrame | None = None, social: pd.DataFrame | None = None,
                        media: pd.DataFrame | None = None, media_pools: pd.DataFrame | None = None,
                        benefits: pd.DataFrame | None = None,
                        item_embeddings: np.ndarray | None = None, training_data_hash: str | None = None,
                        **settings: Any) -> Recommender:
        """A ready Recommender from fitted parts.

        ``pipeline``: a fitted :class:`~recsys.features.pipeline.FeaturePipeline`; ``model``: the
        :class:`~recsys.models.two_tower.TwoTowerModel`; ``index``: an item index holding the item
        tower's embeddings of ``items`` under their ids (None: an exact index is built); ``ranker`` and
        the :class:`~recsys.features.ranking_features.RankingFeatureBuilder` it was trained with (both
        None: rank by the two-tower score); the builder's settings are kept and it is refitted on the
        serving tables, so a live Recommender and its reloaded bundle compute the same features.
        ``events`` is the serving log (histories, purchases, popularity, point-in-time features).
        ``benefits``: partner coupons (validated, :func:`recsys.features.benefits.validate_benefits`).
        ``settings`` are the constructor's keywords.
        """
        if (ranker is None) != (feature_builder is None):
            raise ConfigError("pass ranker and feature_builder together (the ranker scores the builder's frames), "
                              "or neither to rank by the two-tower score")
        rec = cls(**settings)
        params = None
        if feature_builder is not None:
            from recsys.feed.state import builder_events, builder_items

            params = {k: (list(v) if isinstance(v, tuple) else v) for k, v in vars(feature_builder).items()
                      if not k.startswith("_") and not k.endswith("_")}
            feature_builder = type(feature_builder)(**params).fit(builder_events(events), builder_items(items), social,
                                                                  benefits)
        from recsys.storage.bundle import data_hash

        state = build_state(pipeline=pipeline, model=model, index=index, ranker=ranker, builder=feature_builder,
                            items=items, events=events, users=users, social=social, media=media,
                            media_pools=media_pools, config=rec._config(), item_emb=item_embeddings,
                            builder_params=params, benefits=benefits)
        rec._adopt(state, training_data_hash or data_hash({"events": events, "items": items, "users": users,
                                                           "social": social}))
        return rec

    def _adopt(self, state: ServingState, training_hash: str) -> None:
        self._state = state
        self.training_data_hash_ = training_hash

    def _ready(self) -> ServingState:
        state = getattr(self, "_state", None)
        if state is None:
            raise ConfigError("this Recommender is not fitted: call fit(...), build one with "
                              "Recommender.from_components(...), or load a bundle with recsys.load(path)")
        return state

    # ----- serving -------------------------------------------------------------------------------
    def recommend(self, user_id: Any, k: int = 20, media_id: str | None = None, exclude: Iterable = (),
                  context: Mapping | None = None) -> Feed:
        """The feed of ``k`` items for one user on partner ``media_id`` (None: no partner).

        ``exclude``: item ids not to show (e.g. already on the page); ``context``: request extras:
        ``segment`` (e.g. "vip": used only for an unknown user, and only with ``trust_context_segment``; a
        known user's segment comes from the users table), profile fields of a new user, ``timestamp`` for
        point-in-time features (default: the end of the serving log), ``friends``: the user's friends (user
        ids) for this request, whose recent clicks and purchases then feed the ranker's friends' features
        instead of the social graph's (an unknown user has no friends' signal without it).
        """
        state = self._ready()
        uid, note = coerce_id(user_id, id_kind(state.users.ids), "user_id", UNKNOWN_USER)
        notes = [note] if note else []
        req = Request(user_id=uid, media_id=checks.check_media(media_id, notes), k=checks.check_k(k),
                      exclude=checks.item_ids(state, exclude, notes),
                      context=checks.check_context(context, id_kind(state.users.ids)), notes=notes)
        items = run_batch(state, [req], drop=("user_id", "media_id", "fallback", "score_kind"), as_columns=True)
        kind = score_kind(state, req)
        at = (req.context or {}).get("timestamp")
        at_ns = state.as_of_ns if at is None else pd.Timestamp(at).as_unit("ns").value
        return Feed(user_id=req.user_id, media_id=req.media_id, items=items, fallback=req.path, notes=req.notes,
                    score_kind=kind, objective=partner_objective(state, req) if kind == "objective" else None,
                    catalogue=state.catalogue,
                    paid=lambda pos: state.paid_price(pos, np.full(len(pos), req.media_id, dtype=object), at_ns))

    def recommend_batch(self, users: Any, k: int = 20, media_id: str | None = None, *,
                        exclude: Mapping | Iterable | None = None, context: Mapping | None = None,
                        chunk_size: int = 1024) -> pd.DataFrame:
        """Feeds for many users at once, as one frame with ``user_id`` and ``media_id`` columns.

        ``users``: user ids (list, array, Series) or a DataFrame with ``user_id`` and optionally
        ``media_id`` and context columns (``segment``, profile fields, ``timestamp``, ``friends``) per row.
        ``exclude``: ids for every user, or a dict user_id -> ids. Equal to calling :meth:`recommend`
        per user; vectorised per chunk (one tower pass, grouped index searches, one ranker call).
        Notes on fallbacks are in ``result.attrs["notes"]`` (user_id -> list of str).
        """
        k = checks.check_k(k)
        chunk_size = checks.check_k(chunk_size, "chunk_size", None)
        state = self._ready()
        reqs = self._requests(state, users, k, media_id, exclude, context)
        parts = [run_batch(state, reqs[s:s + chunk_size]) for s in range(0, len(reqs), chunk_size)]
        out = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=list(OUTPUT_COLUMNS))
        out.attrs["notes"] = {r.user_id: list(r.notes) for r in reqs if r.notes}
        return out

    def _requests(self, state: ServingState, users: Any, k: int, media_id: Any, exclude: Any, context: Any
                  ) -> list[Request]:
        base_ctx = checks.check_context(context, id_kind(state.users.ids)) or {}
        per_user_excl = exclude if isinstance(exclude, Mapping) else None
        common_notes: list[str] = []
        common_excl = () if per_user_excl is not None else checks.item_ids(state, exclude, common_notes)
        user_kind = id_kind(state.users.ids)
        if isinstance(users, pd.DataFrame):
            if "user_id" not in users.columns:
                raise DataValidationError(f"the users frame needs a 'user_id' column; got {list(users.columns)}")
            ctx_cols = [c for c in users.columns if c not in ("user_id", "media_id")]
            frame = users
        else:
            if isinstance(users, (str, bytes)) or not isinstance(users, Iterable):
                raise DataValidationError(f"users must be a list/array/Series of user ids or a DataFrame with "
                                          f"'user_id', got {type(users).__name__}")
            # object dtype: the ids stay as given (a str column would go through pyarrow and its encoder)
            frame, ctx_cols = pd.DataFrame({"user_id": pd.Series(list(users), dtype=object)}), []
        medias = frame["media_id"].tolist() if "media_id" in frame.columns else [media_id] * len(frame)
        reqs = []
        ctx_values = {c: frame[c].tolist() for c in ctx_cols}
        for n, (raw, media) in enumerate(zip(frame["user_id"].tolist(), medias, strict=True)):
            try:
                uid, note = coerce_id(raw, user_kind, "user_id", UNKNOWN_USER)
            except DataValidationError as e:
                raise DataValidationError(f"row {n}: {e}") from None
            notes = [note] if note else []
            ctx = dict(base_ctx)
            ctx.update({c: v[n] for c, v in ctx_values.items() if not checks.missing(v[n])})
            ctx = checks.check_context(ctx, user_kind)
            media = checks.check_media(media, notes)
            if per_user_excl is not None:
                excl = checks.item_ids(state, per_user_excl.get(raw, per_user_excl.get(uid, ())), notes)
            else:
                excl, notes = common_excl, notes + common_notes
            reqs.append(Request(user_id=uid, media_id=media, k=k, exclude=excl, context=ctx or None, notes=notes))
        return reqs

    def recommend_ids(self, users: Any, k: int = 20, media_id: str | None = None, *, item_ids: Any = None,
                      exclude: Mapping | Iterable | None = None, context: Mapping | None = None,
                      chunk_size: int = 1024) -> np.ndarray:
        """Feeds as an (n_users, k) array for offline metrics (``recs`` in :mod:`recsys.evaluation`).

        Item ids, or with ``item_ids`` their indices in it (the column order of an evaluation matrix);
        -1 (None for str ids without ``item_ids``) pads feeds shorter than ``k``. The same feeds as
        :meth:`recommend_batch`, business rules included.
        """
        k, chunk_size = checks.check_k(k), checks.check_k(chunk_size, "chunk_size", None)
        state = self._ready()
        reqs = self._requests(state, users, k, media_id, exclude, context)
        parts = []
        for s in range(0, len(reqs), chunk_size):
            part = run_batch(state, reqs[s:s + chunk_size], with_request=True)
            parts.append(part.assign(_request=part["_request"] + s))
        frame = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=["_request", "rank", "item_id"])
        values = frame["item_id"].to_numpy()
        if item_ids is not None:
            values = pd.Index(np.asarray(item_ids)).get_indexer(values)
        by_id = item_ids is None and (values.dtype == object or state.catalogue.ids.dtype == object)
        out = np.full((len(reqs), k), None if by_id else -1, dtype=object if by_id else np.int64)
        out[frame["_request"].to_numpy(np.int64), frame["rank"].to_numpy(np.int64) - 1] = values
        return out

    def similar_items(self, item_id: Any, k: int = 20, media_id: str | None = None) -> Feed:
        """Items close to ``item_id`` in the two towers' space, within partner ``media_id``'s pool."""
        from recsys.feed.similar import similar_items

        state = self._ready()
        item, note = coerce_id(item_id, id_kind(state.catalogue.index), "item_id", "served as an unknown item")
        notes = [note] if note else []
        media = checks.check_media(media_id, notes)
        feed = similar_items(state, item, checks.check_k(k), media)
        feed.notes[:0] = notes
        return feed

    def audience(self, media_id: str | None = None) -> np.ndarray:
        """The user ids a batch job scores for partner ``media_id``, sorted and unique: the known users with at
        least one positive event (click, cart, fav, purchase; not an impression) on that partner in the serving
        log (a log without partner ids: on any partner). ``None``: every known user (users table and log). An
        unknown partner raises DataValidationError naming the known ones (:mod:`recsys.feed.audience`)."""
        from recsys.feed.audience import audience

        return audience(self._ready(), media_id)

    def pool(self, media_id: str) -> np.ndarray:
        """The live item ids partner ``media_id`` may show (the whole live catalogue when its pool is unrestricted),
        before per-request rules (stock, segments); an unknown partner raises DataValidationError."""
        from recsys.feed.audience import pool

        return pool(self._ready(), media_id)

    def partners(self) -> list[str]:
        """Every partner this Recommender knows (media table, pools, objectives, serving log), sorted."""
        from recsys.feed.audience import partners

        return partners(self._ready())

    # ----- catalogue updates ---------------------------------------------------------------------
    def _update(self, apply: Callable[[ServingState], tuple[ServingState, Any]]) -> Any:
        """Run one catalogue update: ``apply`` gets the latest state and returns (new state, result).

        Updates are linearizable: writers hold the update lock from reading the state to swapping in the new
        one, so each builds on every update before it and none is lost. Readers never take the lock: each
        call reads ``_state`` once and serves from that snapshot. An update that raises swaps nothing in."""
        with self._update_lock():
            state, out = apply(self._ready())
            self._state = state
        return out

    def _update_lock(self) -> threading.Lock:
        # dict.setdefault is one atomic step: two threads can never end up with two different locks
        return self.__dict__.setdefault("_update_lock_", threading.Lock())

    def add_items(self, items: pd.DataFrame, media_pools: pd.DataFrame | None = None) -> int:
        """Add (or replace) items; new items are embedded from their content features. Returns the count.

        ``items`` are held to the training data contract (:func:`recsys.features.schema.validate_items`: every
        required column, finite prices >= 0, commission rates in [0, 1], ``in_stock`` booleans, ...), item ids
        of the catalogue's type; a refused table raises DataValidationError and changes nothing.
        ``media_pools`` (columns ``media_id``, ``item_id``): the partners whose pools the items join. A new item
        without rows joins the partners whose pool is the whole catalogue (their ``media_pools`` rows listed
        every item at fit; the bundle remembers them) and no restricted pool.
        """
        from recsys.feed.updates import add_items

        return self._update(lambda state: (add_items(state, items, media_pools), len(items)))

    def set_benefits(self, benefits: pd.DataFrame | None) -> int:
        """Replace the partner benefits (coupons: :mod:`recsys.features.benefits`) without retraining; returns how
        many there are now. A refused table raises DataValidationError and changes nothing."""
        from recsys.feed.updates import set_benefits

        return self._update(lambda state: set_benefits(state, benefits))

    def remove_items(self, ids: Iterable) -> int:
        """Remove items from every feed at once (unknown ids ignored); returns how many were removed."""
        from recsys.feed.updates import remove_items

        return self._update(lambda state: remove_items(state, checks.item_ids(state, ids)))

    def set_in_stock(self, ids: Iterable, in_stock: bool | Iterable[bool]) -> None:
        """Mark items in or out of stock; feeds follow at once. ``in_stock``: True/False (or 1/0) for every id,
        or one such flag per id; text ('no'), NaN or a count other than len(ids) raise DataValidationError."""
        from recsys.feed.updates import set_in_stock

        self._update(lambda state: (set_in_stock(state, checks.item_ids(state, ids), in_stock), None))

    # ----- live events ---------------------------------------------------------------------------
    def observe(self, events: pd.DataFrame | list[dict], *, journal: Any = None, skip_unknown: bool = False) -> int:
        """Apply events (rows of the events contract) to histories, purchases and the ranker's counts, without
        retraining (:mod:`recsys.feed.live`); returns how many were new to the serving log. A bad row raises
        DataValidationError naming it, and nothing changes. ``journal``: gets the applied rows, durably, before
        they are served (a failed append changes nothing); ``skip_unknown``: skip rows naming unknown items or
        partners, with a warning, instead of refusing the batch (a journal replayed into a newer model)."""
        from recsys.feed.live import observe

        def apply(state: ServingState) -> tuple[ServingState, int]:
            new, rows = observe(state, events, skip_unknown=skip_unknown)
            if journal is not None and len(rows):
                journal.append(rows)
            return new, len(rows)

        return self._update(apply)

    # ----- persistence ---------------------------------------------------------------------------
    def save(self, path: str | Path, *, overwrite: bool = False, key: str | bytes | None = None) -> Path:
        """Write a bundle directory (see :mod:`recsys.storage.bundle`); atomic, checksummed, pickle-free.

        ``key`` (else ``$RECSYS_BUNDLE_KEY``): sign the bundle (docs/RELIABILITY.md, "Tampering")."""
        from recsys.recommender_io import write_components
        from recsys.storage.bundle import write_bundle

        with self._update_lock():  # the shared index and the tables are written as of one state
            return write_bundle(path, lambda root: write_components(self, root), overwrite=overwrite, key=key,
                                training_data_hash=getattr(self, "training_data_hash_", None))

    @classmethod
    def load(cls, path: str | Path, *, key: str | bytes | None = None,
             max_bytes: int | None = None) -> Recommender:
        """Load a bundle saved by :meth:`save` (every checksum verified first; with ``key`` or
        ``$RECSYS_BUNDLE_KEY``, an unsigned or wrongly signed bundle is refused; ``max_bytes`` bounds the
        bundle's total size, 16 GiB by default)."""
        from recsys.recommender_io import read_components
        from recsys.storage.bundle import DEFAULT_MAX_BYTES, read_bundle

        def parts(root: Path, manifest: dict) -> Recommender:
            rec = read_components(root, manifest, cls)
            rec.training_data_hash_ = manifest.get("training_data_hash")
            rec.bundle_manifest_ = manifest
            return rec

        return read_bundle(path, parts, key=key, max_bytes=DEFAULT_MAX_BYTES if max_bytes is None else max_bytes)

    @property
    def info(self) -> dict:
        """What is inside: sizes, component kinds, the recall channels, settings, the serving log's end."""
        s = self._ready()
        channels = ["two_tower", *(["item_to_item"] if s.config.item_to_item and s.item_table is not None else []),
                    *(["friends"] if s.friend_graph is not None else []), "popular"]
        return {"items": s.catalogue.n_alive, "users": len(s.users.ids), "index": type(s.index).__name__,
                "ranker": None if s.ranker is None else s.ranker.kind, "dim": int(s.item_emb.shape[1]),
                "channels": channels, "item_table_entries": None if s.item_table is None else len(s.item_table.indices),
                "as_of": str(s.as_of), "partners_with_pools": sorted(s.pools), "config": s.config.to_dict(),
                "training_data_hash": getattr(self, "training_data_hash_", None)}

    def __repr__(self) -> str:
        if getattr(self, "_state", None) is None:
            return "Recommender(unfitted)"
        i = self.info
        return f"Recommender(items={i['items']}, users={i['users']}, index={i['index']}, ranker={i['ranker']})"
