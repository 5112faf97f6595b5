"""``recsys tune``: search a ``recsys train`` config with Optuna (registered in :mod:`recsys.cli`).

    recsys tune -c experiments/tuning/synthetic-demo.tune.yaml --trials 20 --timeout 30m
    recsys tune --data-dir ../shared/data/retrieval/gowalla        # no tune file: the travelling default

The tune file's format is documented in :mod:`recsys.tuning.spec` and experiments/tuning/README.md.
Imports are lazy so that ``recsys --help`` stays fast.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

__all__ = ["tune"]


def tune(
    config: Annotated[Path | None, typer.Option("--config", "-c", help="A tune file: base config + search space "
                                                "(experiments/tuning/README.md).")] = None,
    trials: Annotated[int, typer.Option("--trials", help="Most trials to run.")] = 20,
    timeout: Annotated[str | None, typer.Option("--timeout", help="Time budget: 30m, 90s, 2h (no trial starts "
                                                "after it; a running one stops at its best epoch).")] = None,
    out: Annotated[Path | None, typer.Option("--out", help="Where best.yaml, trials.json and the plots go "
                                             "(default <output.dir>/<name>/tune).")] = None,
    no_tracking: Annotated[bool, typer.Option("--no-tracking", help="Track nothing in MLflow.")] = False,
    data_dir: Annotated[Path | None, typer.Option("--data-dir", help="Without -c: a LightGCN-format directory "
                                                  "fitted with the travelling default (recsys.tuning.defaults).")] = None,
    json_path: Annotated[Path | None, typer.Option("--json", help="With --data-dir: write the figures here.")] = None,
) -> None:
    """Tune a config on validation (TPE, median pruning, nested MLflow runs); test is read once, at the end."""
    from recsys.errors import RecsysError
    from recsys.tuning.spec import parse_duration

    try:
        seconds = parse_duration(timeout)
        if config is None:
            if data_dir is None:
                typer.echo("error: pass a tune file (recsys tune -c FILE) or a LightGCN-format directory "
                           "(recsys tune --data-dir DIR) for the travelling default", err=True)
                raise typer.Exit(code=2)
            from recsys.tuning.default_run import run_default

            run_default(data_dir, budget_s=seconds, json_path=json_path, tracking=not no_tracking, log=typer.echo)
            return
        from recsys.tuning.spec import load_tune_spec
        from recsys.tuning.study import run_tuning

        result = run_tuning(load_tune_spec(config), trials=trials, timeout_s=seconds, tracking=False if no_tracking else None,
                            out_dir=out, log=typer.echo)
    except (RecsysError, FileNotFoundError) as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(code=2) from None
    typer.echo(f"{len(result.trials)} trials ({result.n_pruned} pruned) in {result.seconds:.0f} s; best: trial "
               f"{result.best_trial}, validation {result.best_value:.4f}")
    typer.echo(f"best config: {result.best_config_path}   train it: recsys train -c {result.best_config_path}")
    if result.parent_run_id:
        typer.echo(f"study run {result.parent_run_id} in {result.tracking_uri} (each trial a nested run)")
