"""A small strict parser: nested dicts (from YAML) -> frozen dataclasses, with errors that name the key.

Field metadata declares what a value may be: ``choices`` (allowed values) and ``low`` / ``high``
(inclusive bounds). Types come from the annotations: ``int``, ``float``, ``bool``, ``str``,
``X | None``, ``tuple[X, ...]``, ``dict[str, Any]`` and nested dataclasses. Nothing is coerced
silently: ``"5"`` for an int, ``1.5`` for an int and ``1`` for a bool are errors (an int is accepted
for a float).
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

from recsys.errors import ConfigError

__all__ = ["choice", "bounded", "parse", "flatten", "apply_overrides", "read_yaml", "to_dict"]

T = TypeVar("T")


def choice(default: Any, values: tuple) -> Any:
    """A field whose value must be one of ``values``."""
    return dataclasses.field(default=default, metadata={"choices": tuple(values)})


def bounded(default: Any, low: float | None = None, high: float | None = None) -> Any:
    """A numeric field within ``[low, high]`` (None: unbounded on that side)."""
    return dataclasses.field(default=default, metadata={"low": low, "high": high})


def _where(path: str, source: str | None) -> str:
    return f"{source}: config key '{path}'" if source else f"config key '{path}'"


def _suggest(word: str, options) -> str:
    close = difflib.get_close_matches(str(word), [str(o) for o in options], n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _check_value(value: Any, tp: Any, path: str, source: str | None) -> Any:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        options = [a for a in args if a is not type(None)]
        if len(options) == 1:
            return _check_value(value, options[0], path, source)
        for arg in options:
            try:
                return _check_value(value, arg, path, source)
            except ConfigError:
                continue
        allowed = " or ".join(_type_name(a) for a in args)
        raise ConfigError(f"{_where(path, source)} must be {allowed}, got {type(value).__name__} {value!r}")
    if dataclasses.is_dataclass(tp):
        return parse(tp, value, path=path, source=source)
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{_where(path, source)} must be a list, got {type(value).__name__} {value!r}")
        (item,) = typing.get_args(tp)[:1]
        return tuple(_check_value(v, item, f"{path}[{n}]", source) for n, v in enumerate(value))
    if origin is dict or tp is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{_where(path, source)} must be a mapping, got {type(value).__name__} {value!r}")
        return dict(value)
    if tp is Any:
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{_where(path, source)} must be true or false, got {type(value).__name__} {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{_where(path, source)} must be an integer, got {type(value).__name__} {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{_where(path, source)} must be a number, got {type(value).__name__} {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{_where(path, source)} must be a string, got {type(value).__name__} {value!r}")
        return value
    raise ConfigError(f"{_where(path, source)}: unsupported annotation {tp!r} (a bug in the config schema)")


def _check_meta(value: Any, meta: typing.Mapping, path: str, source: str | None) -> None:
    values = value if isinstance(value, tuple) else (value,)
    if "choices" in meta:
        allowed = meta["choices"]
        for v in values:
            if v not in allowed:
                raise ConfigError(f"{_where(path, source)}: {v!r} is not allowed; allowed values: "
                                  f"{list(allowed)}{_suggest(v, allowed)}")
    low, high = meta.get("low"), meta.get("high")
    for v in values:
        if v is None or isinstance(v, bool):
            continue
        if (low is not None and v < low) or (high is not None and v > high):
            rng = f"[{'-inf' if low is None else low}, {'inf' if high is None else high}]"
            raise ConfigError(f"{_where(path, source)}: {v!r} is out of range; allowed values lie in {rng}")


def parse(cls: type[T], data: Any, *, path: str = "", source: str | None = None) -> T:
    """Build dataclass ``cls`` from a mapping; unknown keys, wrong types and bad values raise ConfigError."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        where = _where(path, source) if path else (f"{source}: the config" if source else "the config")
        raise ConfigError(f"{where} must be a mapping of keys to values, got {type(data).__name__} {data!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    for key in data:
        if key not in fields:
            full = f"{path}.{key}" if path else str(key)
            under = f" under '{path}'" if path else " at the top level"
            raise ConfigError(f"{source + ': ' if source else ''}unknown config key '{full}'{_suggest(key, fields)}; "
                              f"allowed keys{under}: {sorted(fields)}")
    kwargs = {}
    for name, value in data.items():
        full = f"{path}.{name}" if path else name
        checked = _check_value(value, hints[name], full, source)
        _check_meta(checked, fields[name].metadata, full, source)
        kwargs[name] = checked
    try:
        return cls(**kwargs)
    except ConfigError as e:
        raise ConfigError(f"{source + ': ' if source else ''}{path or 'config'}: {e}") from None


def to_dict(cfg: Any) -> dict:
    """A plain nested dict of a config dataclass (tuples as lists), ready for YAML or JSON."""
    def plain(v: Any) -> Any:
        if dataclasses.is_dataclass(v):
            return {f.name: plain(getattr(v, f.name)) for f in dataclasses.fields(v)}
        if isinstance(v, (tuple, list)):
            return [plain(x) for x in v]
        if isinstance(v, dict):
            return {k: plain(x) for k, x in v.items()}
        return v

    return plain(cfg)


def flatten(cfg: Any, prefix: str = "") -> dict[str, Any]:
    """``{"retrieval.dim": 32, ...}``: one entry per leaf (lists and dicts as their JSON-like text)."""
    out: dict[str, Any] = {}
    for key, value in (to_dict(cfg) if dataclasses.is_dataclass(cfg) else cfg).items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value and all(isinstance(k, str) for k in value):
            out.update(flatten(value, name + "."))
        else:
            out[name] = value
    return out


def read_yaml(path: str | Path) -> dict:
    """The mapping in a YAML file, or a ConfigError that says what is wrong with the file."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist; see experiments/*.yaml for examples")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        raise ConfigError(f"{path} is not valid YAML: {e}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of config keys at the top level, got {type(data).__name__}")
    return data


def apply_overrides(data: dict, overrides: typing.Iterable[str]) -> dict:
    """``["retrieval.epochs=2", "tracking.enabled=false"]`` applied to a nested dict (values read as YAML)."""
    import copy

    import yaml

    out = copy.deepcopy(data)
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r} must look like key.path=value, e.g. retrieval.epochs=2")
        key, raw = item.split("=", 1)
        parts = [p for p in key.strip().split(".") if p]
        if not parts:
            raise ConfigError(f"override {item!r} names no key; use key.path=value")
        node = out
        for p in parts[:-1]:
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {item!r}: '{p}' is a value, not a section")
        node[parts[-1]] = yaml.safe_load(raw)
    return out
