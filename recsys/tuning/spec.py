"""The ``recsys tune`` file: a ``recsys train`` config to start from and the search space over its keys.

    base: experiments/synthetic-demo.yaml     # a recsys train config (relative to this file), or a mapping
    metric: recall@20                          # validation metric maximised (what the two-tower validates)
    sampler: {seed: 0, n_startup_trials: 5}    # TPE
    pruner: {n_startup_trials: 2, n_warmup_steps: 2}   # median pruner on per-epoch validation (epochs 1-based)
    enqueue: [{retrieval.temperature: 0.1}]    # points tried first (optional)
    space:
      retrieval.temperature: {low: 0.05, high: 0.5, log: true}   # float (low/high, optional log)
      retrieval.epochs: {low: 2, high: 10}                       # int (both bounds integers)
      retrieval.dim: {choices: [32, 64]}                         # categorical

Every key of ``space`` is a dotted ``recsys train`` key; a trial's config is the base with the sampled
values set, checked like any config (unknown keys and bad values are :class:`~recsys.errors.ConfigError`).
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from recsys.errors import ConfigError

__all__ = ["ParamSpec", "TuneSpec", "load_tune_spec", "tune_spec_from_dict", "parse_duration", "set_key"]

_TOP_KEYS = {"base", "metric", "sampler", "pruner", "enqueue", "space"}
_SEARCHABLE = {"retrieval", "features", "seed"}  # what a trial may change; data, split and tracking stay put
_UNITS = {"s": 1, "m": 60, "h": 3600}


@dataclass(frozen=True)
class ParamSpec:
    """One searched key: ``kind`` float / int / categorical, its bounds or choices, ``log`` scale."""

    key: str
    kind: str
    low: float | None = None
    high: float | None = None
    log: bool = False
    choices: tuple = ()

    def suggest(self, trial: Any) -> Any:
        """The value an Optuna trial samples for this key."""
        if self.kind == "categorical":
            return trial.suggest_categorical(self.key, list(self.choices))
        if self.kind == "int":
            return trial.suggest_int(self.key, int(self.low), int(self.high), log=self.log)
        return trial.suggest_float(self.key, float(self.low), float(self.high), log=self.log)


@dataclass(frozen=True)
class TuneSpec:
    """A parsed tune file: the base config mapping, the space, the metric and the sampler / pruner settings."""

    base: dict
    space: tuple[ParamSpec, ...]
    metric: str = "recall@20"
    sampler: dict = field(default_factory=dict)
    pruner: dict = field(default_factory=dict)
    enqueue: tuple[dict, ...] = ()
    source: str | None = None


def parse_duration(text: str | int | float | None) -> float | None:
    """Seconds from ``"30m"``, ``"90s"``, ``"2h"``, ``"1h30m"`` or a bare number of seconds (None: no limit)."""
    if text is None:
        return None
    if isinstance(text, int | float):
        return float(text)
    s = str(text).strip().lower()
    if re.fullmatch(r"\d+(\.\d+)?", s):
        return float(s)
    parts = re.findall(r"(\d+(?:\.\d+)?)\s*([smh])", s)
    if not parts or re.sub(r"\s", "", "".join(a + u for a, u in parts)) != re.sub(r"\s", "", s):
        raise ConfigError(f"time budget {text!r} is not a duration; write e.g. 30m, 90s, 2h or 1h30m")
    return sum(float(a) * _UNITS[u] for a, u in parts)


def set_key(data: dict, key: str, value: Any) -> dict:
    """A copy of the nested mapping ``data`` with the dotted ``key`` set to ``value``."""
    out = copy.deepcopy(data)
    node = out
    parts = key.split(".")
    for p in parts[:-1]:
        node = node.setdefault(p, {})
        if not isinstance(node, dict):
            raise ConfigError(f"space key {key!r}: '{p}' is a value, not a section")
    node[parts[-1]] = value
    return out


def _param(key: str, spec: Any, where: str) -> ParamSpec:
    if not isinstance(spec, dict):
        raise ConfigError(f"{where}space.{key}: expected a mapping like {{low: 0.05, high: 0.5}} or "
                          f"{{choices: [32, 64]}}, got {spec!r}")
    unknown = set(spec) - {"low", "high", "log", "choices", "type"}
    if unknown:
        raise ConfigError(f"{where}space.{key}: unknown keys {sorted(unknown)}; use low/high/log, choices or type")
    if "choices" in spec:
        choices = spec["choices"]
        if not isinstance(choices, list) or not choices:
            raise ConfigError(f"{where}space.{key}.choices must be a non-empty list, got {choices!r}")
        return ParamSpec(key, "categorical", choices=tuple(choices))
    low, high = spec.get("low"), spec.get("high")
    if not all(isinstance(v, int | float) and not isinstance(v, bool) for v in (low, high)) or low >= high:
        raise ConfigError(f"{where}space.{key}: low and high must be numbers with low < high, got {low!r}, {high!r}")
    kind = spec.get("type") or ("int" if isinstance(low, int) and isinstance(high, int) else "float")
    if kind not in ("int", "float"):
        raise ConfigError(f"{where}space.{key}.type must be int or float (or give choices), got {kind!r}")
    log = bool(spec.get("log", False))
    if log and low <= 0:
        raise ConfigError(f"{where}space.{key}: a log-scale range needs low > 0, got {low}")
    return ParamSpec(key, kind, low=low, high=high, log=log)


def tune_spec_from_dict(data: dict, *, source: str | None = None, base_dir: Path | None = None) -> TuneSpec:
    """A :class:`TuneSpec` from a mapping (``base`` as a path is read relative to ``base_dir``, then the cwd)."""
    from recsys.fit.parsing import read_yaml
    from recsys.fit.settings import config_from_dict

    where = f"{source}: " if source else ""
    if not isinstance(data, dict):
        raise ConfigError(f"{where}expected a mapping with 'base' and 'space', got {type(data).__name__}")
    unknown = set(data) - _TOP_KEYS
    if unknown:
        raise ConfigError(f"{where}unknown keys {sorted(unknown)}; a tune file has {sorted(_TOP_KEYS)}")
    base = data.get("base") or {}
    if isinstance(base, str):
        path = Path(base)
        if not path.is_absolute() and base_dir is not None and (base_dir / path).exists():
            path = base_dir / path
        base = read_yaml(path)
    if not isinstance(base, dict):
        raise ConfigError(f"{where}'base' must be a recsys train config file or mapping, got {base!r}")
    space = data.get("space")
    if not isinstance(space, dict) or not space:
        raise ConfigError(f"{where}'space' must map at least one recsys train key (e.g. retrieval.temperature) "
                          "to {low, high} or {choices}")
    params = tuple(_param(k, v, where) for k, v in space.items())
    fixed = [p.key for p in params if p.key.split(".")[0] not in _SEARCHABLE]
    if fixed:
        raise ConfigError(f"{where}space keys {fixed} cannot be searched: a study keeps one data set, split and "
                          f"tracking; search keys under {sorted(_SEARCHABLE)}")
    if (base.get("retrieval") or {}).get("bench_config") and any(p.key.startswith("retrieval.") for p in params):
        raise ConfigError(f"{where}the base config sets retrieval.bench_config, whose file overrides the retrieval "
                          "keys being searched; remove bench_config from the base to tune retrieval.* keys")
    for p in params:  # every key must be a recsys train key with values of the right type
        probe = p.choices[0] if p.kind == "categorical" else (int(p.low) if p.kind == "int" else float(p.low))
        config_from_dict(set_key(base, p.key, probe), source=f"{where}space.{p.key}")
    enqueue = data.get("enqueue") or []
    if not isinstance(enqueue, list) or not all(isinstance(e, dict) for e in enqueue):
        raise ConfigError(f"{where}'enqueue' must be a list of {{key: value}} mappings")
    known = {p.key for p in params}
    for e in enqueue:
        if set(e) - known:
            raise ConfigError(f"{where}enqueue names keys outside the space: {sorted(set(e) - known)}")
    metric = str(data.get("metric", "recall@20"))
    if metric not in ("recall@20", "ndcg@20"):
        raise ConfigError(f"{where}metric {metric!r}: the two-tower validates recall@20 and ndcg@20; choose one")
    return TuneSpec(base=base, space=params, metric=metric, sampler=dict(data.get("sampler") or {}),
                    pruner=dict(data.get("pruner") or {}), enqueue=tuple(enqueue), source=source)


def load_tune_spec(path: str | Path) -> TuneSpec:
    """Read and check a tune file (module docstring)."""
    from recsys.fit.parsing import read_yaml

    path = Path(path)
    return tune_spec_from_dict(read_yaml(path), source=str(path), base_dir=path.parent)
