"""The fitted feature pipeline: raw events/items/users in, tower input tensors out.

The same object encodes at training time (:meth:`FeaturePipeline.training_data`) and at inference
(:meth:`encode_items`, :meth:`encode_users`); it is saved as one JSON file. Values never seen at fit
time (a new user, item, brand, media partner or title word) map to out-of-vocabulary buckets, so
inference never crashes on them, and a new item still gets an embedding from its content.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from recsys.errors import DataValidationError
from recsys.features.sequences import history_tensors, sequence_matrix
from recsys.features.transforms import HashedTokens, QuantileBuckets
from recsys.features.vocab import HashingVocabulary, Vocabulary, vocabulary_from_dict
from recsys.params import hyperparameters
from recsys.storage.atomic import write_text_atomically

__all__ = ["FeaturePipeline"]


def _require(df: pd.DataFrame, cols: list[str], table: str) -> None:
    missing = [c for c in cols if c not in df.columns]
    if missing:
        raise DataValidationError(f"{table} table lacks columns {missing}; it has {list(df.columns)}. "
                                  f"Pass them, or configure the FeaturePipeline without them.")


class FeaturePipeline:
    """Vocabularies, price buckets, hashed title tokens and behaviour sequences for the two towers.

    ``id_hash_buckets`` switches user/item ids to hashing (for id spaces too large to enumerate);
    otherwise ids get a vocabulary with one OOV row, which cold-start items share.
    """

    def __init__(self, *, item_categoricals: tuple[str, ...] = ("category", "brand", "shop"),
                 price_column: str | None = "price", price_buckets: int = 10, title_column: str | None = "title",
                 title_buckets: int = 1 << 14, title_max_tokens: int = 16, user_categoricals: tuple[str, ...] = (),
                 context_column: str | None = "media_id",
                 positive_events: tuple[str, ...] = ("click", "cart", "fav", "purchase"),
                 impression_event: str | None = "impression", history_len: int = 50,
                 id_hash_buckets: int | None = None) -> None:
        self.item_categoricals = tuple(item_categoricals)
        self.price_column, self.price_buckets = price_column, price_buckets
        self.title_column, self.title_buckets, self.title_max_tokens = title_column, title_buckets, title_max_tokens
        self.user_categoricals = tuple(user_categoricals)
        self.context_column = context_column
        self.positive_events, self.impression_event = tuple(positive_events), impression_event
        self.history_len, self.id_hash_buckets = history_len, id_hash_buckets

    # ----- fit ------------------------------------------------------------------------------------
    def _id_vocab(self, values) -> Vocabulary | HashingVocabulary:
        if self.id_hash_buckets:
            return HashingVocabulary(num_buckets=self.id_hash_buckets).fit()
        return Vocabulary().fit(values)

    def fit(self, events: pd.DataFrame, items: pd.DataFrame, users: pd.DataFrame | None = None) -> FeaturePipeline:
        """Fit every vocabulary and transform on *training* tables only."""
        _require(events, ["user_id", "item_id"], "events")
        _require(items, ["item_id", *self.item_categoricals], "items")
        user_values = events["user_id"] if users is None else pd.concat([users["user_id"], events["user_id"]])
        self.users_ = self._id_vocab(user_values)
        self.items_ = self._id_vocab(items["item_id"])
        self.item_vocabs_ = {c: Vocabulary().fit(items[c].astype(str)) for c in self.item_categoricals}
        self.price_ = QuantileBuckets(num_buckets=self.price_buckets).fit(items[self.price_column]) \
            if self.price_column else None
        self.title_ = HashedTokens(num_buckets=self.title_buckets, max_tokens=self.title_max_tokens).fit() \
            if self.title_column else None
        if users is not None and self.user_categoricals:
            _require(users, ["user_id", *self.user_categoricals], "users")
        self.user_vocabs_ = {c: Vocabulary().fit(users[c].astype(str)) for c in self.user_categoricals} \
            if users is not None else {}
        has_ctx = self.context_column and self.context_column in events.columns
        self.context_ = Vocabulary().fit(events[self.context_column].astype(str)) if has_ctx else None
        return self

    # ----- encode ---------------------------------------------------------------------------------
    def encode_items(self, items: pd.DataFrame) -> dict[str, torch.Tensor]:
        """Item-tower inputs for the rows of ``items`` (unknown ids and values go to OOV buckets)."""
        _require(items, ["item_id"], "items")
        out = {"item_id": torch.from_numpy(self.items_.transform(items["item_id"]))}
        for c, vocab in self.item_vocabs_.items():
            vals = items[c].astype(str) if c in items.columns else pd.Series([None] * len(items))
            out[c] = torch.from_numpy(vocab.transform(vals))
        if self.price_ is not None:
            vals = items[self.price_column] if self.price_column in items.columns else [np.nan] * len(items)
            out["price_bucket"] = torch.from_numpy(self.price_.transform(vals))
        if self.title_ is not None:
            vals = items[self.title_column] if self.title_column in items.columns else [""] * len(items)
            out["title_tokens"] = torch.from_numpy(self.title_.transform(vals))
        return out

    def encode_users(self, user_ids, *, events: pd.DataFrame | None = None, users: pd.DataFrame | None = None,
                     media_ids=None) -> dict[str, torch.Tensor]:
        """User-tower inputs for ``user_ids``: ids, profile, context and the behaviour history from ``events``."""
        ids = pd.Series(np.asarray(user_ids, dtype=object) if not isinstance(user_ids, pd.Series) else user_ids)
        out = {"user_id": torch.from_numpy(self.users_.transform(ids.to_numpy()))}
        if self.user_vocabs_:
            prof = users.drop_duplicates("user_id").set_index("user_id") if users is not None else None
            for c, vocab in self.user_vocabs_.items():
                # text first, then reindexed: a user missing from the table must not turn the others' integers
                # into floats ("1" -> "1.0", an unknown value); the missing ones read "nan" as before
                vals = prof[c].astype(str).reindex(ids.to_numpy()).fillna("nan") if prof is not None and c in prof \
                    else [None] * len(ids)
                out[c] = torch.from_numpy(vocab.transform(np.asarray(vals, dtype=object)))
        if self.context_ is not None:
            media = [None] * len(ids) if media_ids is None else np.broadcast_to(np.asarray(media_ids, dtype=object),
                                                                                 (len(ids),))
            out[self.context_column] = torch.from_numpy(self.context_.transform(np.asarray(media, dtype=object)))
        hist = self.history_matrix(events if events is not None else pd.DataFrame(columns=["user_id", "item_id"]),
                                   row_ids=ids)
        out.update(history_tensors(hist, np.arange(len(ids))))
        return out

    def history_matrix(self, events: pd.DataFrame, row_ids=None):
        """Rows x items CSR of each row's last ``history_len`` positive items (rows: ``row_ids`` or user index)."""
        pos = self._positives(events)
        n_items = self.items_.size
        if row_ids is None:
            rows, n_rows = self.users_.transform(pos["user_id"].to_numpy()), self.users_.size
        else:
            lookup = pd.Index(pd.Series(np.asarray(row_ids, dtype=object)).drop_duplicates())
            rows = lookup.get_indexer(pd.Series(pos["user_id"].to_numpy(), dtype=object))
            keep = rows >= 0
            pos, rows, n_rows = pos[keep], rows[keep], len(lookup)
            first = lookup.get_indexer(pd.Series(np.asarray(row_ids, dtype=object)))
        items = self.items_.transform(pos["item_id"].to_numpy())
        order = pos["timestamp"].to_numpy() if "timestamp" in pos.columns else None
        csr = sequence_matrix(rows, items, order, n_users=n_rows, n_items=n_items, max_len=self.history_len)
        return csr if row_ids is None else csr[first]

    def _positives(self, events: pd.DataFrame) -> pd.DataFrame:
        if "event_type" in events.columns:
            return events[events["event_type"].astype(str).isin(self.positive_events)]
        return events

    # ----- training -------------------------------------------------------------------------------
    def catalogue(self, items: pd.DataFrame) -> pd.DataFrame:
        """``items`` reordered so that row ``i`` is item index ``i`` (items without an index dropped)."""
        if not isinstance(self.items_, Vocabulary):
            raise DataValidationError("catalogue() needs an id vocabulary; hashed item ids have no fixed order")
        frame = items.drop_duplicates("item_id").set_index("item_id")
        # named here: a vocabulary read from JSON has an unnamed index, which reset_index would call "index"
        return frame.reindex(pd.Index(self.items_.values_, name="item_id")).reset_index()

    def training_data(self, events: pd.DataFrame, items: pd.DataFrame, users: pd.DataFrame | None = None):
        """A :class:`recsys.features.retrieval_data.RetrievalData` from training tables (same encoders as inference)."""
        import scipy.sparse as sp

        from recsys.features.retrieval_data import RetrievalData

        n_users, n_items = self.users_.size, self.items_.size
        pos = self._positives(events)
        u, i = self.users_.transform(pos["user_id"].to_numpy()), self.items_.transform(pos["item_id"].to_numpy())
        positives = sp.csr_matrix((np.ones(len(u), np.float32), (u, i)), shape=(n_users, n_items))
        positives.data[:] = 1.0
        impressions = None
        if self.impression_event and "event_type" in events.columns:
            imp = events[events["event_type"].astype(str) == self.impression_event]
            iu, ii = self.users_.transform(imp["user_id"].to_numpy()), self.items_.transform(imp["item_id"].to_numpy())
            shown = sp.csr_matrix((np.ones(len(iu), np.float32), (iu, ii)), shape=(n_users, n_items))
            impressions = (shown - shown.multiply(positives > 0)).tocsr()
            impressions.eliminate_zeros()
        user_ids = self.users_.inverse_transform(np.arange(self.users_.num_known)) \
            if isinstance(self.users_, Vocabulary) else None
        user_feats = None
        if user_ids is not None:
            enc = self.encode_users(user_ids, users=users, media_ids=self._dominant_media(events, user_ids))
            pad = n_users - len(user_ids)
            user_feats = {k: torch.cat([v, v.new_full((pad,), 0)]) for k, v in enc.items()
                          if k not in ("history", "history_offsets")}
            user_feats["user_id"][len(user_ids):] = torch.arange(len(user_ids), n_users)
        item_feats = self.encode_items(self.catalogue(items)) if isinstance(self.items_, Vocabulary) else None
        if item_feats is not None:
            item_feats = {k: torch.cat([v, v[:1].new_zeros((n_items - len(v), *v.shape[1:]))])
                          for k, v in item_feats.items()}
            item_feats["item_id"] = torch.arange(n_items)
        return RetrievalData(positives=positives, history=self.history_matrix(events), impressions=impressions,
                             user_features=user_feats, item_features=item_feats)

    def _dominant_media(self, events: pd.DataFrame, user_ids) -> np.ndarray | None:
        if self.context_ is None:
            return None
        top = events.groupby("user_id")[self.context_column].agg(lambda s: s.astype(str).mode().iat[0])
        return top.reindex(user_ids).to_numpy(dtype=object)

    def tower_sizes(self) -> dict[str, Any]:
        """The table sizes a two-tower model needs for this pipeline's vocabularies
        (:meth:`recsys.models.two_tower.TwoTowerModel.for_features` builds the model from them)."""
        item_feats = {c: v.size for c, v in self.item_vocabs_.items()}
        if self.price_ is not None:
            item_feats["price_bucket"] = self.price_.size
        user_feats = {c: v.size for c, v in self.user_vocabs_.items()}
        if self.context_ is not None:
            user_feats[self.context_column] = self.context_.size
        return dict(num_users=self.users_.size, num_items=self.items_.size, user_features=user_feats,
                    item_features=item_feats, title_buckets=self.title_.size if self.title_ else 0,
                    history_len=self.history_len, item_oov_index=self.items_.oov_index)

    # ----- persistence ----------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {"params": hyperparameters(self), "users": self.users_.to_dict(), "items": self.items_.to_dict(),
                "item_vocabs": {c: v.to_dict() for c, v in self.item_vocabs_.items()},
                "user_vocabs": {c: v.to_dict() for c, v in self.user_vocabs_.items()},
                "price": self.price_.to_dict() if self.price_ else None,
                "title": self.title_.to_dict() if self.title_ else None,
                "context": self.context_.to_dict() if self.context_ else None}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> FeaturePipeline:
        p = cls(**{k: (tuple(v) if isinstance(v, list) else v) for k, v in d["params"].items()})
        p.users_, p.items_ = vocabulary_from_dict(d["users"]), vocabulary_from_dict(d["items"])
        p.item_vocabs_ = {c: Vocabulary.from_dict(v) for c, v in d["item_vocabs"].items()}
        p.user_vocabs_ = {c: Vocabulary.from_dict(v) for c, v in d["user_vocabs"].items()}
        p.price_ = QuantileBuckets.from_dict(d["price"]) if d["price"] else None
        p.title_ = HashedTokens.from_dict(d["title"]) if d["title"] else None
        p.context_ = Vocabulary.from_dict(d["context"]) if d["context"] else None
        return p

    def save(self, path: str | Path) -> Path:
        return write_text_atomically(path, json.dumps(self.to_dict()))

    @classmethod
    def load(cls, path: str | Path) -> FeaturePipeline:
        return cls.from_dict(json.loads(Path(path).read_text()))
