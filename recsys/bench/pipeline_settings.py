"""The settings of ``recsys benchmark retrieval`` with a pipeline config: a YAML whose one top-level key is
``pipeline``. Parsed here, at the edge; unknown keys are errors.

.. code-block:: yaml

    pipeline:
      two_tower: gowalla_train_prior_wd.yaml      # a two-tower YAML (relative to this file) or a mapping
      graph_filter: {kind: chebycf, order: 8, flatness: 1.5, ideal_rank: 512, ideal_weight: 0.2, degree_power: 0.4}
      item_to_item: {neighbours: 100}             # optional
      fusion_grid: {graph_filter: [1.0], two_tower: [0.5, 1.0], popular: [0.0, 0.1]}
      seeds: [0, 1, 2]
      cache_dir: experiments/results/tmp/two_tower_cache   # optional: reuse trained two-towers
      baselines: true
      workers: 2                                  # threads scoring chunks of users
      fusion_users: 0.5                           # optional: validation users only the fusion weights are chosen on
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from recsys.errors import ConfigError

__all__ = ["PipelineSettings", "is_pipeline_config", "load_pipeline_settings", "make_filter", "FILTER_KINDS"]

FILTER_KINDS = ("chebycf", "gf-cf", "bspm", "linear")
CHANNELS = ("two_tower", "graph_filter", "item_to_item", "popular")


@dataclass
class PipelineSettings:
    """What the pipeline benchmark fits, fuses and reports (module docstring)."""

    two_tower: Any = None  # TwoTowerSettings
    graph_filter: dict = field(default_factory=lambda: {"kind": "chebycf"})
    item_to_item: dict | None = None
    fusion_grid: dict = field(default_factory=lambda: {"graph_filter": [1.0], "two_tower": [0.5, 1.0]})
    seeds: list = field(default_factory=lambda: [0, 1, 2])
    cache_dir: str | None = None
    baselines: bool = True
    workers: int = 2  # threads scoring chunks of users (validation and test)
    # share of the validation users held apart for the fusion weights: the two-tower neither stops nor picks its
    # prior on them, so its validation score there is not flattered by its own selection (0: one split for both)
    fusion_users: float = 0.0

    @property
    def uses_two_tower(self) -> bool:
        """Whether the two-tower is a channel (weighed in ``fusion_grid``); its settings still define the carve."""
        return "two_tower" in self.fusion_grid

    def seeded(self, seed: int):
        """The two-tower settings with this seed."""
        return dataclasses.replace(self.two_tower, seed=int(seed))


def is_pipeline_config(path: str | Path | None) -> bool:
    """True when ``path`` is a YAML whose top level holds ``pipeline``."""
    if path is None or not Path(path).exists():
        return False
    import yaml

    data = yaml.safe_load(Path(path).read_text())
    return isinstance(data, dict) and "pipeline" in data


def load_pipeline_settings(path: str | Path) -> PipelineSettings:
    """Parse and check a pipeline YAML; the two-tower part goes through the two-tower settings' own checks."""
    import yaml

    from recsys.fit.two_tower_settings import TwoTowerSettings, load_two_tower_settings

    path = Path(path)
    data = (yaml.safe_load(path.read_text()) or {}).get("pipeline")
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: `pipeline:` must hold a mapping of settings.")
    known = {f.name for f in dataclasses.fields(PipelineSettings)}
    if set(data) - known:
        raise ConfigError(f"{path}: unknown pipeline keys {sorted(set(data) - known)}; known: {sorted(known)}.")
    tt = data.get("two_tower")
    if isinstance(tt, str):
        data["two_tower"] = load_two_tower_settings(path.parent / tt)
    elif isinstance(tt, dict):
        data["two_tower"] = TwoTowerSettings.from_dict(tt)
    elif tt is None:
        data["two_tower"] = TwoTowerSettings()
    else:
        raise ConfigError(f"{path}: pipeline.two_tower must be a YAML file name or a mapping; got {tt!r}.")
    out = PipelineSettings(**data)
    make_filter(out.graph_filter)  # bad filter settings fail now, not after training
    bad = set(out.fusion_grid) - set(CHANNELS)
    if bad or not out.fusion_grid:
        raise ConfigError(f"{path}: fusion_grid names {sorted(bad)}; channels are {list(CHANNELS)}.")
    if "item_to_item" in out.fusion_grid and out.item_to_item is None:
        raise ConfigError(f"{path}: fusion_grid weighs item_to_item, but `item_to_item:` is not configured.")
    if isinstance(out.fusion_users, bool) or not isinstance(out.fusion_users, int | float) or \
            not 0 <= out.fusion_users < 1:
        raise ConfigError(f"{path}: fusion_users must be a number in [0, 1); got {out.fusion_users!r}.")
    if not isinstance(out.workers, int) or out.workers < 1:
        raise ConfigError(f"{path}: workers must be an integer >= 1; got {out.workers!r}.")
    if not out.seeds or not all(isinstance(s, int) for s in out.seeds):
        raise ConfigError(f"{path}: seeds must be a non-empty list of integers; got {out.seeds!r}.")
    return out


def make_filter(spec: dict):
    """A graph filter from ``{kind: ..., **params}``: ChebyCF's or a :class:`GraphFilter` variant."""
    from recsys.models.graph_filter import VARIANTS, GraphFilter
    from recsys.models.graph_filter_cheby import ChebyFilter

    params = dict(spec or {})
    kind = params.pop("kind", "chebycf")
    if kind not in FILTER_KINDS:
        raise ConfigError(f"graph_filter.kind must be one of {FILTER_KINDS}; got {kind!r}.")
    try:
        if kind == "chebycf":
            return ChebyFilter(**params)
        return GraphFilter(**{**VARIANTS[kind], **params})
    except TypeError as e:
        raise ConfigError(f"graph_filter: {e}.\nFix: use the constructor's parameter names.") from None
