"""`recsys score`: every user's feed for one partner or all of them, written as Parquet parts (batch scoring).

Registered by recsys/cli/__init__.py; the body imports lazily so that `recsys --help` stays fast.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

ENGINES = ("local", "spark")


def score(
    model: Annotated[str, typer.Option("--model", help="A bundle directory or an MLflow URI (models:/name@alias).")],
    out: Annotated[Path, typer.Option("--out", help="Output directory of the Parquet parts and the manifest.")],
    media_id: Annotated[str | None, typer.Option("--media-id", help="One partner (default: every partner).")] = None,
    users: Annotated[Path | None, typer.Option("--users", help="Parquet/CSV file with a user_id column "
                                                              "(default: each partner's audience).")] = None,
    k: Annotated[int, typer.Option("--k", help="Items per feed.")] = 20,
    nested: Annotated[bool, typer.Option("--nested", help="One row per user, the feed a list of structs.")] = False,
    chunk_size: Annotated[int, typer.Option("--chunk-size", help="Users per part.")] = 2048,
    restart: Annotated[bool, typer.Option("--restart", help="Remove the parts of another job in --out first.")] = False,
    engine: Annotated[str, typer.Option("--engine", help="local | spark")] = "local",
    workers: Annotated[int | None, typer.Option("--workers", help="Local engine: processes scoring side by side "
                                                                 "(default: one per core for 10,000+ users).")] = None,
) -> None:
    """Score every user's feed into --out (part-*.parquet, _manifest.json, _SUCCESS); rerun to resume after a kill."""
    from recsys.errors import ConfigError, RecsysError

    try:
        if engine not in ENGINES:
            raise ConfigError(f"unknown engine {engine!r}; use one of {', '.join(ENGINES)}")
        kwargs = dict(media_id=media_id, users=users, k=k, nested=nested, chunk_size=chunk_size, restart=restart)
        if engine == "spark":
            if workers is not None:
                raise ConfigError("--workers is for --engine local; Spark's parallelism is its master's (local[N])")
            manifest = _spark()(model, out, **kwargs)
        else:
            from recsys.batch.job import score as run

            manifest = run(model, out, workers=workers, **kwargs)
    except RecsysError as e:
        typer.echo(f"error: {e}".encode("utf-8", "backslashreplace").decode("utf-8"), err=True)
        raise typer.Exit(code=2) from None
    summary = {key: manifest.get(key) for key in ("rows", "users", "parts", "resumed_parts", "seconds")}
    summary["resumed_parts"] = len(summary["resumed_parts"] or [])
    typer.echo(json.dumps(summary))
    typer.echo(f"wrote {out}")


def _spark():
    """``recsys.batch.spark.score_spark_job``, or a ConfigError when this install does not have it."""
    from recsys.errors import ConfigError

    try:
        from recsys.batch.spark import score_spark_job
    except ImportError as e:
        raise ConfigError(f"--engine spark is not available here ({e}); use --engine local, or install the "
                          "spark extra: pip install -e '.[spark]'") from None
    return score_spark_job
