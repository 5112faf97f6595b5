"""The two-tower model: owns a user tower and an item tower; its architecture is a JSON dataclass.

Saved as a directory with ``config.json`` (the :class:`TwoTowerConfig`) and ``model.safetensors``
(the weights), so loading needs nothing but the directory and runs no pickle.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from recsys.errors import ArtifactError, ConfigError
from recsys.models.audience import AUDIENCE_MODES, AudiencePooling
from recsys.models.towers import ItemTower, UserTower

__all__ = ["TwoTowerConfig", "TwoTowerModel"]

HISTORY_MODES = ("none", "mean", "attention", "mean+attention")
FORMAT_VERSION = 1


@dataclass
class TwoTowerConfig:
    """Architecture of a :class:`TwoTowerModel`.

    ``num_users``/``num_items`` count id-embedding rows including out-of-vocabulary rows;
    ``item_oov_index`` is the row a never-seen item id maps to (used by ``item_id_dropout``).
    ``user_features``/``item_features`` map feature names to cardinalities.
    ``item_audience`` (``none`` | ``mean`` | ``degree``) blends into each item vector the pooled
    user embeddings of its audience (:mod:`recsys.models.audience`), from the user-id table when
    ``share_audience_embeddings`` (needs ``use_user_id``), else from a table of its own.
    ``history_audience`` makes the user's history pool those audience-blended item-id vectors
    instead of the bare id table: a second hop (user <- items <- their users).
    ``user_dropout``/``item_dropout``: dropout on each tower's output vector before normalisation
    (training mode only; SimpleX's ``net_dropout`` on the user side); 0 = off.
    """

    num_users: int
    num_items: int
    dim: int = 64
    use_user_id: bool = True
    use_item_id: bool = True
    user_features: dict[str, int] = field(default_factory=dict)
    item_features: dict[str, int] = field(default_factory=dict)
    title_buckets: int = 0
    history: str = "mean"
    history_len: int = 50
    share_history_embeddings: bool = True
    gate_init: float = 0.5
    learn_gate: bool = True
    normalize: bool = True
    item_bias: bool = False
    item_audience: str = "none"
    share_audience_embeddings: bool = True
    history_audience: bool = False
    item_id_dropout: float = 0.0
    user_dropout: float = 0.0
    item_dropout: float = 0.0
    item_oov_index: int | None = None
    init_std: float = 0.1

    def __post_init__(self) -> None:
        if self.history not in HISTORY_MODES:
            raise ConfigError(f"history must be one of {HISTORY_MODES}, got {self.history!r}")
        if self.dim < 1 or self.num_users < 1 or self.num_items < 1:
            raise ConfigError(f"dim, num_users and num_items must be >= 1, got {self.dim}, "
                              f"{self.num_users}, {self.num_items}")
        if not 0.0 < self.gate_init < 1.0:
            raise ConfigError(f"gate_init must lie in (0, 1), got {self.gate_init}")
        for name in ("user_dropout", "item_dropout"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ConfigError(f"{name} must lie in [0, 1), got {getattr(self, name)}")
        if self.item_audience not in AUDIENCE_MODES:
            raise ConfigError(f"item_audience must be one of {AUDIENCE_MODES}, got {self.item_audience!r}")
        if self.item_audience != "none" and self.share_audience_embeddings and not self.use_user_id:
            raise ConfigError("item_audience with share_audience_embeddings pools the user-id table, but "
                              "use_user_id is false: set use_user_id: true or share_audience_embeddings: false")
        if self.history_audience and (self.item_audience == "none" or not self.share_history_embeddings):
            raise ConfigError("history_audience pools the audience-blended item-id table: it needs item_audience "
                              "(mean or degree) and share_history_embeddings: true")

    @classmethod
    def from_dict(cls, d: dict) -> TwoTowerConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ConfigError(f"unknown two-tower config keys {unknown}; known keys: {sorted(known)}")
        return cls(**d)


class TwoTowerModel(nn.Module):
    """User and item towers meeting in one ``dim``-dimensional space (optionally on the unit sphere)."""

    def __init__(self, config: TwoTowerConfig) -> None:
        super().__init__()
        self.config = config
        c = config
        self.item_tower = ItemTower(num_items=c.num_items, dim=c.dim, use_id=c.use_item_id,
                                    categorical=c.item_features, title_buckets=c.title_buckets,
                                    id_dropout=c.item_id_dropout, oov_index=c.item_oov_index, init_std=c.init_std)
        self.user_tower = UserTower(num_users=c.num_users, dim=c.dim, use_id=c.use_user_id,
                                    categorical=c.user_features, history=c.history, history_len=c.history_len,
                                    gate_init=c.gate_init, learn_gate=c.learn_gate, init_std=c.init_std)
        if c.item_bias:
            # a per-item score offset, appended as one more coordinate (user side: a constant 1)
            self.item_bias = nn.Embedding(c.num_items, 1)
            nn.init.zeros_(self.item_bias.weight)
        self.history_embedding: nn.Embedding | None = None
        if not c.share_history_embeddings and c.history != "none":
            # a separate "item as context" table (asymmetric item-item similarity, as in FISM/EASE)
            self.history_embedding = nn.Embedding(c.num_items, c.dim)
            nn.init.normal_(self.history_embedding.weight, std=c.init_std)
        self.audience = None
        if c.item_audience != "none":
            self.audience = AudiencePooling(num_items=c.num_items, dim=c.dim, mode=c.item_audience,
                                            table_rows=0 if c.share_audience_embeddings else c.num_users,
                                            gate_init=c.gate_init, learn_gate=c.learn_gate, init_std=c.init_std)

    def _out(self, x: torch.Tensor, dropout: float = 0.0) -> torch.Tensor:
        if dropout and self.training:
            x = F.dropout(x, dropout)
        return F.normalize(x, dim=-1) if self.config.normalize else x

    def item_embeddings(self, feats: dict[str, torch.Tensor]) -> torch.Tensor:
        """Item embeddings [n, dim] (``[n, dim + 1]`` with ``item_bias``: the bias comes last)."""
        out = self.item_tower(feats)
        if self.audience is not None:
            out = self.audience(feats["item_id"], out, self._audience_users())
        out = self._out(out, self.config.item_dropout)
        if self.config.item_bias:
            out = torch.cat([out, self.item_bias(feats["item_id"])], dim=1)
        return out

    def user_embeddings(self, feats: dict[str, torch.Tensor]) -> torch.Tensor:
        """User embeddings [B, dim]; history items use the item id table unless a separate one is configured."""
        out = self._out(self.user_tower(feats, self._history_table()), self.config.user_dropout)
        if self.config.item_bias:
            out = torch.cat([out, out.new_ones(out.shape[0], 1)], dim=1)
        return out

    def _audience_users(self) -> torch.Tensor | None:
        return self.user_tower.id_embedding.weight if self.config.share_audience_embeddings else None

    def _history_table(self) -> torch.Tensor:
        """The item vectors a user's history pools (see ``history_audience``)."""
        if self.history_embedding is not None:
            return self.history_embedding.weight
        table = self.item_tower.id_embedding.weight
        if self.config.history_audience:
            ids = torch.arange(table.shape[0], device=table.device)
            table = self.audience(ids, table, self._audience_users())
        return table

    def set_item_audience(self, positives) -> TwoTowerModel:
        """Record each item's audience from ``positives`` (users x items sparse matrix) when
        ``item_audience`` is on (a no-op otherwise); it is saved with the model. Returns ``self``."""
        if self.audience is not None:
            self.audience.set_graph(positives, self.config.num_users)
        return self

    def with_item_prior(self, prior: torch.Tensor) -> TwoTowerModel:
        """A copy (eval mode) whose scores add the fixed per-item offset ``prior`` [num_items].

        E.g. ``beta * log1p(training count)``, a popularity prior chosen on validation. It lives in the
        item-bias coordinate (added to a learned bias if there is one), so index, save and load are
        unchanged: item vectors get one more coordinate, user vectors a constant 1.
        """
        prior = torch.as_tensor(prior, dtype=torch.float32).reshape(-1)
        if prior.numel() != self.config.num_items:
            raise ConfigError(f"with_item_prior: expected one offset per item ({self.config.num_items}), "
                              f"got {prior.numel()}")
        out = TwoTowerModel(replace(self.config, item_bias=True)).to(self.device)
        out.load_state_dict(self.state_dict(), strict=False)
        with torch.no_grad():
            base = self.item_bias.weight if self.config.item_bias else torch.zeros_like(out.item_bias.weight)
            out.item_bias.weight.copy_(base + prior.to(base)[:, None])
        return out.eval()

    @property
    def device(self) -> torch.device:
        return self.item_tower.id_embedding.weight.device

    def save(self, path: str | Path) -> Path:
        """Write ``config.json`` and ``model.safetensors`` into directory ``path``."""
        from safetensors.torch import save_file

        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        meta = {"format_version": FORMAT_VERSION, "kind": "two_tower", "config": asdict(self.config)}
        (path / "config.json").write_text(json.dumps(meta, indent=2))  # key order = summation order
        state = {k: v.detach().cpu().contiguous() for k, v in self.state_dict().items()}
        save_file(state, str(path / "model.safetensors"))
        return path

    @classmethod
    def for_features(cls, pipeline: Any, **config: Any) -> TwoTowerModel:
        """A model sized for a fitted :class:`~recsys.features.pipeline.FeaturePipeline` (``config`` sets the rest)."""
        return cls(TwoTowerConfig(**{**pipeline.tower_sizes(), **config}))

    @classmethod
    def load(cls, path: str | Path, map_location: str | torch.device = "cpu") -> TwoTowerModel:
        """Rebuild a model saved with :meth:`save` (no pickle)."""
        from safetensors.torch import load_file

        path = Path(path)
        cfg_file, weights = path / "config.json", path / "model.safetensors"
        if not cfg_file.exists() or not weights.exists():
            raise ArtifactError(f"{path} is not a saved two-tower model: expected config.json and "
                                f"model.safetensors in it; save one with TwoTowerModel.save(path)")
        meta = json.loads(cfg_file.read_text())
        if meta.get("kind") != "two_tower" or meta.get("format_version") != FORMAT_VERSION:
            raise ArtifactError(f"{cfg_file}: expected kind 'two_tower' format_version {FORMAT_VERSION}, "
                                f"got {meta.get('kind')!r} {meta.get('format_version')!r}")
        model = cls(TwoTowerConfig.from_dict(meta["config"]))
        try:
            model.load_state_dict(load_file(str(weights), device=str(map_location)))
        except RuntimeError as e:
            raise ArtifactError(f"{weights} does not match its config.json: {e}") from e
        return model.eval()
