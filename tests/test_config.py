"""Configs: unknown keys, bad values and wrong types fail with the key's path, the allowed keys or values and a
suggestion; files and overrides parse; every experiments/*.yaml of ``recsys train`` is valid."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from recsys.bench.pipeline_settings import is_pipeline_config
from recsys.errors import ConfigError
from recsys.fit.settings import (
    TrainConfig,
    config_from_dict,
    config_to_dict,
    flat_params,
    load_config,
)

REPO = Path(__file__).resolve().parents[1]
TRAIN_CONFIGS = ["synthetic-demo.yaml", "gowalla.yaml", "yelp2018.yaml", "taobao-multibehavior.yaml"]


def error(data: dict, source: str | None = "exp.yaml") -> str:
    with pytest.raises(ConfigError) as e:
        config_from_dict(data, source=source)
    return str(e.value)


def test_unknown_nested_key_names_path_allowed_keys_and_suggestion():
    msg = error({"retrieval": {"epoch": 3}})
    assert "exp.yaml" in msg and "'retrieval.epoch'" in msg
    assert "did you mean 'epochs'" in msg
    assert "'negatives'" in msg and "'temperature'" in msg  # the allowed keys under retrieval


def test_unknown_top_level_key():
    msg = error({"trainig": {}})
    assert "'trainig'" in msg and "top level" in msg and "'tracking'" in msg


def test_bad_choice_names_key_and_allowed_values():
    msg = error({"retrieval": {"negatives": "hard"}})
    assert "'retrieval.negatives'" in msg and "'hard'" in msg
    for allowed in ("in_batch", "uniform", "mixed", "impressions"):
        assert allowed in msg
    assert "did you mean 'mixed'" in error({"retrieval": {"negatives": "mixd"}})


def test_bad_choice_inside_a_list():
    msg = error({"evaluation": {"baselines": ["popular", "populr"]}})
    assert "'evaluation.baselines'" in msg and "did you mean 'popular'" in msg


@pytest.mark.parametrize(("data", "key", "expected"), [
    ({"retrieval": {"dim": "32"}}, "retrieval.dim", "integer"),
    ({"retrieval": {"dim": 32.5}}, "retrieval.dim", "integer"),
    ({"retrieval": {"lr": "fast"}}, "retrieval.lr", "number"),
    ({"tracking": {"enabled": "yes"}}, "tracking.enabled", "true or false"),
    ({"tracking": {"enabled": 1}}, "tracking.enabled", "true or false"),
    ({"evaluation": {"ks": 20}}, "evaluation.ks", "list"),
    ({"ranker": {"options": [1]}}, "ranker.options", "mapping"),
    ({"tracking": "off"}, "tracking", "mapping"),
])
def test_wrong_type_names_key_and_expected_type(data, key, expected):
    msg = error(data)
    assert f"'{key}'" in msg and expected in msg


def test_out_of_range_names_bounds():
    msg = error({"split": {"test_fraction": 1.5}})
    assert "'split.test_fraction'" in msg and "[0.01, 0.99]" in msg
    msg = error({"evaluation": {"ks": [10, 0]}})  # a list's bad element: the list's key, the value and the bounds
    assert "'evaluation.ks': 0 is out of range" in msg and "[1, inf]" in msg


def test_defaults_types_and_int_accepted_for_float():
    cfg = config_from_dict({"retrieval": {"lr": 1}, "evaluation": {"ks": [20, 50]}, "ranker": {"num_threads": None}})
    assert isinstance(cfg.retrieval.lr, float) and cfg.retrieval.lr == 1.0
    assert cfg.evaluation.ks == (20, 50) and cfg.ranker.num_threads is None
    assert cfg == config_from_dict({"retrieval": {"lr": 1.0}, "evaluation": {"ks": [20, 50]}})
    assert TrainConfig().tracking.model_name == "guess-you-like" and TrainConfig().tracking.alias == "champion"


def test_round_trip_and_flat_params():
    cfg = config_from_dict({"name": "x", "retrieval": {"epochs": 2}, "ranker": {"windows": ["1D", None]}})
    assert config_from_dict(config_to_dict(cfg)) == cfg
    flat = flat_params(cfg)
    assert flat["retrieval.epochs"] == "2" and flat["name"] == "x" and flat["data.path"] == "null"
    assert all(isinstance(v, str) for v in flat.values())
    assert "tracking.enabled" in flat and not any(k.startswith("retrieval.retrieval") for k in flat)


def test_overrides_and_bad_override():
    cfg = config_from_dict({}, overrides=["retrieval.epochs=2", "tracking.enabled=false", "ranker.windows=[1D]"])
    assert cfg.retrieval.epochs == 2 and cfg.tracking.enabled is False and cfg.ranker.windows == ("1D",)
    with pytest.raises(ConfigError, match="key.path=value"):
        config_from_dict({}, overrides=["retrieval.epochs"])
    with pytest.raises(ConfigError, match="did you mean 'epochs'"):
        config_from_dict({}, overrides=["retrieval.epoch=2"])


def test_yaml_files(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("retrieval: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)
    bad.write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_config(bad)
    good = tmp_path / "good.yaml"
    good.write_text("name: tiny\nretrieval:\n  epochs: 1\n")
    assert load_config(good).retrieval.epochs == 1 and load_config(good).name == "tiny"


@pytest.mark.parametrize("name", TRAIN_CONFIGS)
def test_experiment_configs_parse(name):
    cfg = load_config(REPO / "experiments" / name)
    assert cfg.name == Path(name).stem
    bench = cfg.retrieval.bench_config
    assert bench is None or bench == "default" or (REPO / bench).is_file()
    if cfg.data.source != "synthetic":  # real data: its published split, a path inside the shared data directory
        assert cfg.split.method == "published" and cfg.data.path and not Path(cfg.data.path).is_absolute()


def test_demo_settings_match_the_experiment_file():
    from recsys.demo import demo_config

    assert load_config(REPO / "experiments" / "synthetic-demo.yaml") == demo_config()


def test_cli_reports_config_errors(tmp_path):
    from recsys.cli.train import train_app

    bad = tmp_path / "bad.yaml"
    bad.write_text("ranker:\n  kind: lightgbm\n")
    runner = CliRunner()
    res = runner.invoke(train_app, ["-c", str(bad)])
    assert res.exit_code == 2
    assert "ranker.kind" in res.output and "gbdt" in res.output and "esmm" in res.output
    res = runner.invoke(train_app, ["retrieval", "-c", str(bad)])
    assert res.exit_code == 2 and "ranker.kind" in res.output
    res = runner.invoke(train_app, [])
    assert res.exit_code == 2 and "recsys train -c" in res.output
    assert "recsys tune --data-dir DIR" in res.output  # where data without a config goes


_RETRIEVAL_YAMLS = sorted((REPO / "experiments" / "retrieval").rglob("*.yaml"))
# a pipeline config (one top-level key ``pipeline``) is parsed by its own settings type, below
PIPELINE_CONFIGS = [str(p.relative_to(REPO)) for p in _RETRIEVAL_YAMLS if is_pipeline_config(p)]
BENCH_CONFIGS = [str(p.relative_to(REPO)) for p in _RETRIEVAL_YAMLS if str(p.relative_to(REPO)) not in PIPELINE_CONFIGS]


@pytest.mark.parametrize("name", PIPELINE_CONFIGS)
def test_every_pipeline_config_parses(name):
    from recsys.bench.pipeline_settings import load_pipeline_settings
    from recsys.fit.settings import TwoTowerSettings

    settings = load_pipeline_settings(REPO / name)
    assert isinstance(settings.two_tower, TwoTowerSettings)
    assert settings.seeds and settings.fusion_grid


def test_pipeline_configs_exist_for_both_datasets():
    assert {Path(n).name for n in PIPELINE_CONFIGS} >= {"gowalla_pipeline.yaml", "yelp2018_pipeline.yaml"}


@pytest.mark.parametrize("dataset", ["gowalla", "yelp2018"])
def test_the_named_pipeline_configs_have_their_three_seed_results_beside_them(dataset):
    # issue 20 names these two files: each runs three seeds, and its JSON was made from it (not from an older file)
    import json

    from recsys.bench.pipeline_settings import load_pipeline_settings

    config = REPO / "experiments" / "retrieval" / f"{dataset}_pipeline.yaml"
    assert len(load_pipeline_settings(config).seeds) == 3
    result = json.loads(config.with_suffix(".json").read_text())
    assert result["config_file"] == f"experiments/retrieval/{dataset}_pipeline.yaml"
    assert {"recall@20", "ndcg@20", "train_seconds"} <= set(result) and len(result["seeds"]) == 3


@pytest.mark.parametrize("name", BENCH_CONFIGS)
def test_every_retrieval_benchmark_config_parses_to_its_own_keys(name):
    # one settings type: each key of the file is the field of that name, every other field its default
    import yaml

    from recsys.fit.settings import TwoTowerSettings, load_two_tower_settings

    raw = yaml.safe_load((REPO / name).read_text()) or {}
    settings, default = load_two_tower_settings(REPO / name), TwoTowerSettings()
    for field in vars(default):
        want = raw.get(field, getattr(default, field))
        want = tuple(float(b) for b in want) if field == "popularity_prior" else want
        assert getattr(settings, field) == want, field


@pytest.mark.parametrize("name", TRAIN_CONFIGS)
def test_every_train_config_gives_two_tower_settings(name):
    from recsys.fit.settings import TwoTowerSettings
    from recsys.fit.stages import retrieval_settings

    cfg = load_config(REPO / "experiments" / name)
    settings = retrieval_settings(cfg)
    assert isinstance(settings, TwoTowerSettings)
    if cfg.retrieval.bench_config == "default":
        assert settings == TwoTowerSettings()
    elif not cfg.retrieval.bench_config:  # the section's own keys, the top-level seed
        r = cfg.retrieval
        assert (settings.dim, settings.task, settings.negatives, settings.epochs, settings.lr, settings.seed) == (
            r.dim, r.task, r.negatives, r.epochs, r.lr, cfg.seed)


def test_recommender_fit_defaults_are_the_quick_fit_preset():
    from recsys.fit.components import TrainSettings
    from recsys.fit.settings import QUICK_FIT, RetrievalConfig

    assert TrainSettings().two_tower(10_000) == QUICK_FIT
    assert (QUICK_FIT.dim, QUICK_FIT.epochs, QUICK_FIT.batch_size, QUICK_FIT.lr, QUICK_FIT.task,
            QUICK_FIT.temperature, QUICK_FIT.negatives, QUICK_FIT.num_negatives, QUICK_FIT.item_id_dropout,
            QUICK_FIT.use_user_id, QUICK_FIT.device) == (32, 5, 512, 5e-3, "sampled_softmax", 0.1, "mixed", 256, 0.1,
                                                         True, "cpu")
    assert TrainSettings(dim=8).two_tower(100).num_negatives == 100  # no more uniform negatives than items
    two_tower = RetrievalConfig().two_tower(seed=0)  # recsys train's retrieval section: the same defaults
    assert all(getattr(two_tower, f) == getattr(QUICK_FIT, f) for f in vars(RetrievalConfig()) if hasattr(QUICK_FIT, f)
               and f not in ("item_id_dropout", "validation_fraction"))


def test_production_code_does_not_import_the_benchmarks():
    import re

    pattern = re.compile(r"^\s*(from recsys\.bench\b|import recsys\.bench\b|from recsys import bench\b)", re.M)
    offenders = [str(p.relative_to(REPO)) for p in (REPO / "recsys").rglob("*.py")
                 if p.parts[len(REPO.parts) + 1] not in ("bench", "cli") and pattern.search(p.read_text())]
    assert offenders == []
