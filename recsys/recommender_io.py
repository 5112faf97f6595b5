"""Writing and reading the parts of a Recommender's bundle (the manifest and checksums live in
:mod:`recsys.storage.bundle`, which knows nothing of the Recommender).

Only safe formats: JSON, safetensors, parquet, and the retrieval package's own index files.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import pandas as pd

from recsys.errors import ArtifactError

__all__ = ["write_components", "read_components"]

R = TypeVar("R")
TABLES = ("events", "users", "social", "media", "media_pools", "benefits")


def _settings(rec: Any) -> dict:
    return {"n_candidates": rec.n_candidates, "max_per_category": rec.max_per_category,
            "repeat_purchase_categories": list(rec.repeat_purchase_categories),
            "require_in_stock": rec.require_in_stock, "default_objective": rec.default_objective,
            "cold_start": rec.cold_start, "segment_column": rec.segment_column,
            "unknown_partner": rec.unknown_partner, "no_partner": rec.no_partner,
            "trust_context_segment": rec.trust_context_segment, "item_to_item": rec.item_to_item, "friends": rec.friends}


def _parquet(df: pd.DataFrame, path: Path) -> None:
    df = df.reset_index(drop=True).copy()
    for c in df.columns:  # categoricals and pandas strings round-trip as plain strings
        if isinstance(df[c].dtype, pd.CategoricalDtype):
            df[c] = df[c].astype(object)
    df.to_parquet(path, index=False)


def write_components(rec: Any, root: Path) -> dict:
    """Write every component of a fitted Recommender under ``root``; returns the component summary."""
    from safetensors.numpy import save_file

    from recsys.models.rankers.registry import RANKER_KINDS

    state = rec._ready()
    if state.ranker is not None and getattr(state.ranker, "kind", None) not in RANKER_KINDS:
        raise ArtifactError(f"cannot bundle a {type(state.ranker).__name__}: only rankers that load without pickle "
                            "through recsys.models.rankers.load_ranker (GBDTRanker, ESMMRanker) can be saved")
    ids = state.catalogue.ids
    meta = {"settings": _settings(rec), "config": state.config.to_dict(), "builder_params": state.builder_params,
            "item_id_kind": "str" if ids.dtype == object else "int", "as_of": str(state.as_of),
            "open_pools": sorted(state.open_pools)}
    (root / "recommender.json").write_text(json.dumps(meta, indent=1, sort_keys=True))
    state.pipeline.save(root / "pipeline.json")
    state.model.save(root / "model")
    state.index.save(root / "index")
    if state.ranker is not None:
        state.ranker.save(root / "ranker")
    save_file({"item_embeddings": np.ascontiguousarray(state.item_emb, dtype=np.float32)},
              str(root / "item_embeddings.safetensors"))
    (root / "tables").mkdir()
    items = state.catalogue.to_frame(alive_only=False)
    items["__removed__"] = ~state.catalogue.alive
    _parquet(items, root / "tables" / "items.parquet")
    for name in TABLES:
        if name in state.tables:
            _parquet(state.tables[name], root / "tables" / f"{name}.parquet")
    _parquet(state.popular.to_frame(), root / "tables" / "popular.parquet")
    return {"model": "two_tower", "index": getattr(state.index, "kind", type(state.index).__name__),
            "ranker": None if state.ranker is None else state.ranker.kind, "items": state.catalogue.n_alive,
            "users": len(state.users.ids), "dim": int(state.item_emb.shape[1])}


def _read_parquet(path: Path) -> pd.DataFrame:
    try:
        return pd.read_parquet(path)
    except Exception as e:  # pyarrow raises several types on damaged files
        raise ArtifactError(f"{path} could not be read as parquet ({type(e).__name__}: {e}); re-save the bundle") from None


def _check_model_config(root: Path) -> None:
    """Bound the two-tower config before it sizes any allocation: every table it implies must be in the weights."""
    cfg_file, weights = root / "model" / "config.json", root / "model" / "model.safetensors"
    fix = "the bundle is damaged or was edited: restore it or re-save it"
    try:
        cfg = json.loads(cfg_file.read_text())["config"]
        dim = cfg["dim"]
        sizes = [cfg.get("num_users", 0), cfg.get("num_items", 0), cfg.get("title_buckets", 0),
                 *(cfg.get("user_features") or {}).values(), *(cfg.get("item_features") or {}).values()]
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
        raise ArtifactError(f"{cfg_file} is not a two-tower config ({type(e).__name__}: {e}); {fix}") from None
    ints = [dim, *sizes]
    if not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in ints) or not 1 <= dim <= 65536:
        raise ArtifactError(f"{cfg_file}: dim={dim!r} and table sizes {sizes!r} must be integers (dim 1..65536); {fix}")
    budget = 2 * weights.stat().st_size + 2**20  # a float32 table of n rows is n*dim*4 bytes of the weights file
    if max(sizes, default=0) * dim * 4 > budget:
        raise ArtifactError(f"{cfg_file}: a {max(sizes):,} x {dim} table cannot come from the {weights.stat().st_size:,}"
                            f"-byte {weights.name}; {fix}")


def read_components(root: Path, manifest: dict, make: Callable[..., R]) -> R:
    """Rebuild a ready Recommender from a verified bundle directory: ``make(**settings)`` (the Recommender class,
    passed in by ``Recommender.load`` so that this module need not import it) adopts the loaded state."""
    from safetensors.numpy import load_file

    from recsys.features.pipeline import FeaturePipeline
    from recsys.feed.build import build_state
    from recsys.feed.fallback import PopularItems
    from recsys.feed.state import ServingConfig, builder_events, builder_items
    from recsys.index import load_index
    from recsys.models.two_tower import TwoTowerModel

    try:
        meta = json.loads((root / "recommender.json").read_text())
        rec = make(**meta["settings"])
        config = ServingConfig.from_dict(meta["config"])
        pipeline = FeaturePipeline.load(root / "pipeline.json")
    except (KeyError, TypeError, ValueError) as e:
        raise ArtifactError(f"{root / 'recommender.json'} or pipeline.json does not match this recsys "
                            f"({type(e).__name__}: {e}); re-save the bundle with this version") from None
    _check_model_config(root)
    model = TwoTowerModel.load(root / "model")
    index = load_index(root / "index")
    ranker = None
    if (root / "ranker").is_dir():
        from recsys.models.rankers import load_ranker

        ranker = load_ranker(root / "ranker")
    emb = load_file(str(root / "item_embeddings.safetensors"))["item_embeddings"]
    items = _read_parquet(root / "tables" / "items.parquet")
    removed = items.pop("__removed__").to_numpy(bool)
    tables = {n: _read_parquet(root / "tables" / f"{n}.parquet") for n in TABLES
              if (root / "tables" / f"{n}.parquet").is_file()}
    builder = None
    if ranker is not None:
        from recsys.features.ranking_features import RankingFeatureBuilder

        builder = RankingFeatureBuilder(**meta["builder_params"]).fit(builder_events(tables["events"]), builder_items(items),
                                                                      tables.get("social"), tables.get("benefits"))
    popular = PopularItems.from_frame(_read_parquet(root / "tables" / "popular.parquet"))
    state = build_state(pipeline=pipeline, model=model, index=index, ranker=ranker, builder=builder, items=items,
                        events=tables["events"], users=tables.get("users"), social=tables.get("social"),
                        media=tables.get("media"), media_pools=tables.get("media_pools"), config=config,
                        benefits=tables.get("benefits"),
                        popular=popular, item_emb=emb, builder_params=meta["builder_params"],
                        removed=items["item_id"].to_numpy()[removed],
                        open_pools=meta.get("open_pools"))  # bundles before it: pools listing every item
    rec._adopt(state, manifest.get("training_data_hash"))
    return rec
