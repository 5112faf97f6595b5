"""``recsys train``: the typer sub-app (registered in :mod:`recsys.cli` as ``app.add_typer(train_app, name="train")``).

    recsys train -c experiments/synthetic-demo.yaml              # every stage, tracked and registered
    recsys train retrieval -c FILE | recsys train index -c FILE | recsys train ranker -c FILE
    recsys train -c FILE --no-tracking --set retrieval.epochs=2
    recsys train -c FILE --promote                                # champion even if it does not beat it

Imports are lazy so that ``recsys --help`` stays fast; progress bars follow the terminal (quiet under CI).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

__all__ = ["train_app", "train_command"]

train_app = typer.Typer(help="Train and register a recommender from a config file (every run tracked in MLflow).",
                        invoke_without_command=True, no_args_is_help=False)

ConfigOpt = Annotated[Path | None, typer.Option("--config", "-c", help="A YAML config, e.g. experiments/synthetic-demo.yaml.")]
NoTrackingOpt = Annotated[bool, typer.Option("--no-tracking", help="Track nothing (no MLflow store is touched).")]
SetOpt = Annotated[list[str] | None, typer.Option("--set", help="Override a key: --set retrieval.epochs=2 (repeatable).")]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="Print only the final summary.")]
PromoteOpt = Annotated[bool, typer.Option("--promote", help="Make this run's model the champion even if it does not "
                                          "beat the current one on tracking.champion_metric (the comparison is "
                                          "still recorded in the run).")]
ResumeOpt = Annotated[bool | None, typer.Option("--resume/--no-resume", help="Resume the two-tower from this config's "
                      "checkpoint on the same data (--resume: fail if there is none; --no-resume: start over). "
                      "Default: resume when a killed run left one.")]


def train_command(config: Path | None, stage: str = "all", no_tracking: bool = False,
                  overrides: list[str] | None = None, quiet: bool = False, promote: bool = False,
                  resume: bool | None = None) -> None:
    """Body of every ``recsys train`` form: parse the config, run the stage, print where the results went."""
    from recsys.errors import RecsysError

    if config is None:
        typer.echo("error: pass a config file: recsys train -c experiments/synthetic-demo.yaml "
                   "(or recsys train retrieval|index|ranker -c FILE). A LightGCN-format directory (train.txt, "
                   "test.txt) needs no config: recsys tune --data-dir DIR fits the travelling default on it and "
                   "logs what it chose to MLflow (recsys benchmark retrieval --data-dir DIR: the same, tracking "
                   "nothing)", err=True)
        raise typer.Exit(code=2)
    try:
        from recsys.fit.settings import load_config
        from recsys.pipeline.train import run_training

        cfg = load_config(config, overrides=overrides or ())
        result = run_training(cfg, stage=stage, tracking=False if no_tracking else None,
                              log=None if quiet else typer.echo, promote=promote, resume=resume)
    except (RecsysError, FileNotFoundError) as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(code=2) from None
    from recsys.fit.distributed import is_main_process

    if is_main_process():  # under torchrun only rank 0 reports
        _summary(result)


def _summary(result) -> None:
    # the MLflow run's own metric keys (its names cannot hold '@'), as result.metrics holds them
    keys = [k for k in ("retrieval.recall_at_20", "retrieval.ndcg_at_20", "ranker.ctr_auc", "ranker.ctcvr_auc")
            if k in result.metrics]
    for k in keys:
        typer.echo(f"{k}: {result.metrics[k]:.4f}")
    if result.bundle_dir is not None:
        typer.echo(f"bundle: {result.bundle_dir}")
    if result.model:
        typer.echo(f"model: {result.model.get('alias_uri') or result.model['model_uri']}")
        if result.model.get("decision"):
            typer.echo(f"champion: {result.model['decision']}")
    if result.run_id:
        typer.echo(f"run {result.run_id} in {result.tracking_uri}; open it with:\n"
                   f"  mlflow ui --backend-store-uri {result.tracking_uri}   then {result.run_link}")
    else:
        typer.echo("tracking off: nothing recorded")


@train_app.callback()
def train(ctx: typer.Context, config: ConfigOpt = None, no_tracking: NoTrackingOpt = False,
          set_: SetOpt = None, quiet: QuietOpt = False, promote: PromoteOpt = False, resume: ResumeOpt = None) -> None:
    """Run every stage: data -> split -> features -> two-tower -> index -> ranker -> evaluate -> bundle -> log -> register.

    The new version is registered as @candidate; @champion moves to it only when it beats the champion on
    tracking.champion_metric (or with --promote)."""
    if ctx.invoked_subcommand is None:
        train_command(config, "all", no_tracking, set_, quiet, promote, resume)


@train_app.command("retrieval")
def train_retrieval(config: ConfigOpt = None, no_tracking: NoTrackingOpt = False, set_: SetOpt = None,
                    quiet: QuietOpt = False, resume: ResumeOpt = None) -> None:
    """Features and the two-tower model alone (saved under <output.dir>/<name>/retrieval)."""
    train_command(config, "retrieval", no_tracking, set_, quiet, resume=resume)


@train_app.command("index")
def train_index(config: ConfigOpt = None, no_tracking: NoTrackingOpt = False, set_: SetOpt = None,
                quiet: QuietOpt = False) -> None:
    """Build and tune the item index on the retrieval stage's model (run that first)."""
    train_command(config, "index", no_tracking, set_, quiet)


@train_app.command("ranker")
def train_ranker(config: ConfigOpt = None, no_tracking: NoTrackingOpt = False, set_: SetOpt = None,
                 quiet: QuietOpt = False) -> None:
    """The conversion-aware ranker alone, with its test metrics and calibration curve."""
    train_command(config, "ranker", no_tracking, set_, quiet)
