"""`recsys evaluate ...`: baselines on the full-ranking protocol (registered by recsys/cli.py).

Bodies import lazily so that `recsys --help` stays fast.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

evaluate_app = typer.Typer(help="Evaluate models and baselines on the full-ranking protocol.", no_args_is_help=True)

DataDir = Annotated[Path, typer.Option("--data-dir", help="A LightGCN-format directory (train.txt, test.txt).")]
JsonPath = Annotated[Path | None, typer.Option("--json", help="Write the figures to this JSON file.")]


@evaluate_app.command("baselines")
def baselines(data_dir: DataDir, json_path: JsonPath = None) -> None:
    """Popular, random and implicit-ALS Recall@20/NDCG@20 with the seconds each took."""
    from recsys.bench.baselines import run_baselines

    run_baselines(data_dir, json_path=json_path)


@evaluate_app.command("tune-als")
def tune_als(
    data_dir: DataDir,
    json_path: JsonPath = None,
    fraction: Annotated[float, typer.Option(help="Share of each user's training items held out.")] = 0.2,
) -> None:
    """ALS hyperparameter grid on a validation split of the training set (test pairs are never used)."""
    from recsys.bench.baselines import tune_als as run

    rows = run(data_dir, fraction=fraction, json_path=json_path)
    typer.echo(json.dumps(rows[0], indent=2))
