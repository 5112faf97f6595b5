"""The `recsys` command line: `recsys --help` lists every command.

Command bodies import their modules lazily so that `recsys --help` stays fast.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from recsys.cli.evaluate import evaluate_app
from recsys.cli.partner import partner_app, report_app
from recsys.cli.score import score as score_command
from recsys.cli.serve import serve as serve_command
from recsys.cli.train import train_app
from recsys.cli.tune import tune as tune_command

app = typer.Typer(help="recsys: 猜你喜欢 (guess-you-like) recommendation for affiliate media partners.",
                  no_args_is_help=True, add_completion=False)
data_app = typer.Typer(help="Inspect and validate data.", no_args_is_help=True)
benchmark_app = typer.Typer(help="Benchmarks that write JSON figures (see experiments/).", no_args_is_help=True)
app.add_typer(data_app, name="data")
app.add_typer(evaluate_app, name="evaluate")
app.add_typer(benchmark_app, name="benchmark")
app.add_typer(train_app, name="train")
app.add_typer(partner_app, name="partner")
app.add_typer(report_app, name="report")
app.command("score")(score_command)
app.command("serve")(serve_command)
app.command("tune")(tune_command)

JsonOpt = Annotated[Path | None, typer.Option("--json", help="Write the figures to this JSON file.")]


def _echo_json(result: dict, path: Path | None) -> None:
    text = json.dumps(result, indent=2, default=str)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text + "\n")
        typer.echo(f"wrote {path}")
    else:
        typer.echo(text)


@app.command()
def version() -> None:
    """Print the library version."""
    from recsys.version import __version__

    typer.echo(__version__)


@app.command()
def demo(
    n_events: Annotated[int, typer.Option(help="Size of the synthetic affiliate world.")] = 300_000,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
) -> None:
    """Run the main job end to end on the synthetic affiliate world (the embedded default)."""
    from recsys.demo import run_demo

    run_demo(n_events=n_events, seed=seed)


@data_app.command("validate")
def data_validate(
    path: Annotated[Path, typer.Argument(help="A parquet or CSV file.")],
    table: Annotated[str, typer.Option(help="events | items | users | social | media | media_pools")] = "events",
) -> None:
    """Validate a table against its data contract and print a summary, or ``error: ...`` and exit 2."""
    from recsys.errors import RecsysError
    from recsys.features import schema

    fns = {"events": schema.validate_events, "items": schema.validate_items,
           "users": schema.validate_users, "social": schema.validate_social, "media": schema.validate_media,
           "media_pools": schema.validate_media_pools}
    if table not in fns:
        raise typer.BadParameter(f"unknown table {table!r}; use one of {sorted(fns)}", param_hint="--table")
    try:
        df = fns[table](path)
    except RecsysError as e:  # unreadable files included: read_table turns them into DataValidationError
        typer.echo(f"error: {e}".encode("utf-8", "backslashreplace").decode("utf-8"), err=True)
        raise typer.Exit(code=2) from None
    typer.echo(f"{table}: {len(df):,} rows, columns {list(df.columns)}: OK")


@data_app.command("stats")
def data_stats(data_dir: Annotated[Path, typer.Option("--data-dir", help="A LightGCN-format directory.")]) -> None:
    """Print user/item/interaction counts of a LightGCN-format directory (train.txt, test.txt)."""
    from recsys.datasets.lightgcn import load_lightgcn

    _echo_json(load_lightgcn(data_dir).stats(), None)


@benchmark_app.command("retrieval")
def benchmark_retrieval(
    data_dir: Annotated[Path, typer.Option("--data-dir", help="A LightGCN-format directory.")],
    config: Annotated[Path | None, typer.Option("--config", help="A two-tower YAML, or a pipeline: YAML (the "
                                                "channels and their fusion); without it, the travelling default.")] = None,
    json_path: JsonOpt = None,
    budget: Annotated[str | None, typer.Option("--budget", help="Without --config: the default's time for choosing "
                                               "(30m, 90s; default: scaled with the data, at most 6 minutes).")] = None,
) -> None:
    """Full-ranking Recall@20/NDCG@20, time and memory, implicit-ALS beside it. With --config, that config; without,
    the travelling default (recsys.tuning.defaults: it chooses its channels and weights on validation and prints
    what it chose). Writes nothing but the --json file."""
    from recsys.errors import RecsysError

    try:
        if config is None:
            from recsys.tuning.default_run import run_default
            from recsys.tuning.spec import parse_duration

            result = run_default(data_dir, budget_s=parse_duration(budget), json_path=json_path, tracking=False,
                                 log=typer.echo)
        else:
            if budget is not None:
                typer.echo("error: --budget is for the travelling default (no --config); a config sets its own "
                           "epochs", err=True)
                raise typer.Exit(code=2)
            from recsys.bench.retrieval import run_retrieval_benchmark

            result = run_retrieval_benchmark(data_dir, config_path=config, json_path=json_path)
    except (RecsysError, FileNotFoundError) as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(code=2) from None
    if json_path is None:
        _echo_json(result, None)


@benchmark_app.command("graph-filter")
def benchmark_graph_filter(
    data_dir: Annotated[Path, typer.Option("--data-dir", help="A LightGCN-format directory.")],
    json_path: JsonOpt = None,
    md_path: Annotated[Path | None, typer.Option("--md", help="Write the tables (all datasets) here.")] = None,
) -> None:
    """Training-free graph filters (linear, GF-CF, BSPM) beside implicit-ALS: Recall/NDCG@20, time, memory."""
    from recsys.bench.graph_filter import graph_filter_command

    graph_filter_command(data_dir, json_path, md_path)


@benchmark_app.command("index")
def benchmark_index(
    items: Annotated[int, typer.Option("--items", help="Catalogue size (e.g. 100000, 1000000).")],
    json_path: JsonOpt = None,
) -> None:
    """Build time, memory, latency and recall of each index type at one catalogue size."""
    from recsys.bench.index import run_index_benchmark

    result = run_index_benchmark(items, json_path=json_path)
    if json_path is None:
        _echo_json(result, None)


@benchmark_app.command("ranker")
def benchmark_ranker(
    data: Annotated[str, typer.Option("--data", help="synthetic | taobao-multibehavior | ali-ccp")] = "synthetic",
    data_dir: Annotated[Path | None, typer.Option("--data-dir", help="Directory of the real data.")] = None,
    json_path: JsonOpt = None,
    n_events: Annotated[int, typer.Option("--n-events", help="Synthetic world size (or Ali-CCP row cap).")] = 1_000_000,
) -> None:
    """Rankers against baselines: AUCs, calibration, value per 1,000 impressions, time and memory."""
    from recsys.bench.ranker import run_ranker_benchmark

    result = run_ranker_benchmark(data, data_dir=data_dir, json_path=json_path, n_events=n_events)
    if json_path is None:
        _echo_json(result, None)


@benchmark_app.command("evaluation")
def benchmark_evaluation(
    json_path: JsonOpt = Path("experiments/evaluation/evaluation_speed.json"),
    repeats: Annotated[int, typer.Option(help="Runs per case; medians reported.")] = 3,
) -> None:
    """Speed of full evaluation on Gowalla at d=64 and memory at 100k users x 100k items."""
    from recsys.bench.evaluation import run_evaluation_benchmark

    _echo_json(run_evaluation_benchmark(json_path, repeats=repeats), None)


@benchmark_app.command("recommend")
def benchmark_recommend(
    items: Annotated[int, typer.Option("--items", help="Catalogue size of the index.")] = 1_000_000,
    requests: Annotated[int, typer.Option("--requests", help="Single recommend() calls timed.")] = 2000,
    batch_users: Annotated[int, typer.Option("--batch-users", help="Users in the recommend_batch run.")] = 100_000,
    rounds: Annotated[int, typer.Option("--rounds", min=1, help="Rounds of --requests calls; medians reported.")] = 5,
    item_to_item: Annotated[int, typer.Option("--item-to-item", min=0, help=(
        "Candidates the item-to-item channel adds per request (0: the two-tower alone); with it the two-tower "
        "alone is timed beside it."))] = 0,
    friends: Annotated[int, typer.Option("--friends", min=0, help=(
        "Candidates the friends channel adds per request (0: off)."))] = 0,
    out_dir: Annotated[Path, typer.Option("--out-dir", help="Where the JSON and markdown go.")] = Path(
        "experiments/recommend"),
) -> None:
    """In-process recommend() latency p50/p99 on one thread and recommend_batch throughput."""
    from recsys.bench.recommend import run_recommend_benchmark

    _echo_json(run_recommend_benchmark(n_items=items, n_requests=requests, n_batch_users=batch_users,
                                       latency_rounds=rounds, item_to_item=item_to_item, friends=friends,
                                       out_dir=out_dir), None)


@benchmark_app.command("channels")
def benchmark_channels(
    data_dir: Annotated[Path, typer.Option("--data-dir", help="A LightGCN-format directory (train.txt, test.txt).")],
    embedding: Annotated[str, typer.Option("--embedding", help="The embedding channel: als or two_tower.")] = "als",
    config: Annotated[Path | None, typer.Option("--config", help="The two-tower's settings (YAML) for "
                                                "--embedding two_tower.")] = None,
    candidates: Annotated[int, typer.Option("--candidates", min=1, help="The embedding channel's n.")] = 300,
    json_path: JsonOpt = None,
) -> None:
    """Candidate recall of the embedding channel alone and with the item-to-item channel, for the same slots."""
    from recsys.bench.channel_recall import run_channel_recall_benchmark

    _echo_json(run_channel_recall_benchmark(data_dir, json_path, n_candidates=candidates, embedding=embedding,
                                            config=config), None)


@benchmark_app.command("distributed")
def benchmark_distributed(
    config: Annotated[Path, typer.Option("--config", "-c", help="A train config, e.g. experiments/distributed/gowalla.yaml.")],
    nproc: Annotated[int, typer.Option("--nproc", help="Processes of the torchrun run.")] = 2,
    threads: Annotated[int, typer.Option("--threads", help="Total torch threads, split over the processes.")] = 2,
    repeats: Annotated[int, typer.Option(help="Pairs of runs (alternating order); medians reported.")] = 1,
    set_: Annotated[list[str] | None, typer.Option("--set", help="Config override (repeatable).")] = None,
    out_dir: Annotated[Path, typer.Option("--out-dir", help="Where results.json and the table go.")] = Path(
        "experiments/distributed"),
    tag: Annotated[str | None, typer.Option(help="Suffix of the output files (results-<tag>.json).")] = None,
    single_threads: Annotated[int | None, typer.Option(help="Threads of the one process (default: --threads).")] = None,
) -> None:
    """The retrieval stage in one process against torchrun (DDP): test Recall/NDCG@20 and wall time."""
    from recsys.bench.distributed import run_distributed_benchmark

    result = run_distributed_benchmark(config, nproc=nproc, threads=threads, repeats=repeats, overrides=set_ or (),
                                       out_dir=out_dir, tag=tag, single_threads=single_threads)
    _echo_json({k: result[k] for k in ("summary", "ratios", "max_weight_difference_first_pair")}, None)


@benchmark_app.command("batch")
def benchmark_batch(
    items: Annotated[int, typer.Option("--items", help="Catalogue size of the model.")] = 1_000_000,
    users: Annotated[int, typer.Option("--users", help="Distinct users scored by (b), (c) and the resume.")] = 100_000,
    events: Annotated[int, typer.Option("--events", help="Events of the synthetic world.")] = 200_000,
    media_id: Annotated[str, typer.Option("--media-id", help="The partner scored.")] = "app-0",
    loop_users: Annotated[int, typer.Option("--loop-users", help="Users of the recommend() loop (a).")] = 2000,
    master: Annotated[str, typer.Option("--master", help="Spark master of (c).")] = "local[2]",
    out_dir: Annotated[Path, typer.Option("--out-dir", help="Where batch.json and batch.md go.")] = Path(
        "experiments/batch"),
) -> None:
    """Users/s of a recommend() loop, recsys score local and on Spark, the exact-GEMM limit; a kill and resume."""
    from recsys.bench.batch import run_batch_benchmark

    result = run_batch_benchmark(n_items=items, n_users=users, n_events=events, media_id=media_id,
                                 loop_users=loop_users, master=master, out_dir=out_dir)
    _echo_json({k: result[k] for k in ("targets", "a_recommend_loop", "b_local_job", "c_spark_job", "resume")}, None)


@benchmark_app.command("serve")
def benchmark_serve(
    items: Annotated[int, typer.Option("--items", help="Catalogue size of the model.")] = 1_000_000,
    events: Annotated[int, typer.Option("--events", help="Events of the synthetic world.")] = 200_000,
    seconds: Annotated[int, typer.Option("--seconds", min=1, help="Length of each load step.")] = 10,
    swap_seconds: Annotated[int | None, typer.Option("--swap-seconds", help="Load across the three swaps "
                                                                            "(default 6 x --seconds).")] = None,
    concurrency: Annotated[str, typer.Option("--concurrency", help="wrk connections, rising.")] = "1,2,4,8,16,32",
    out: Annotated[Path, typer.Option("--out", help="Where serve.json and serve.md go.")] = Path("experiments/serving"),
) -> None:
    """recsys serve under wrk: throughput and p50/p99 by concurrency, in process, the FastAPI floor, swaps, SIGTERM."""
    from recsys.bench.serve import run_serve_benchmark

    try:
        levels = tuple(int(x) for x in concurrency.split(",") if x.strip())
    except ValueError:
        raise typer.BadParameter(f"expected integers such as 1,2,4,8; got {concurrency!r}") from None
    result = run_serve_benchmark(n_items=items, n_events=events, seconds=seconds, swap_seconds=swap_seconds,
                                 concurrency=levels, out_dir=out)
    _echo_json({k: result[k] for k in ("targets", "saturation", "in_process")}, None)


@benchmark_app.command("partners")
def benchmark_partners(
    events: Annotated[int, typer.Option("--events", help="Events in the synthetic world.")] = 1_000_000,
    seed: Annotated[int, typer.Option("--seed", help="World and model seed.")] = 0,
    carry_n: Annotated[int, typer.Option("--carry-n", help="Items proposed per partner.")] = 20,
    recruit_k: Annotated[int, typer.Option("--recruit-k", help="Partners proposed per target.")] = 3,
    json_path: JsonOpt = None,
) -> None:
    """Products to carry and partners to recruit against the synthetic world's truth and the baselines."""
    from recsys.bench.partners import run_partners_benchmark

    result = run_partners_benchmark(events, seed=seed, carry_n=carry_n, recruit_k=recruit_k, json_path=json_path)
    _echo_json({"world": result["world"], "carry": result["carry"]["summary"],
                "recruit": result["recruit"]["summary"]}, None)


@benchmark_app.command("synthetic")
def benchmark_synthetic(
    sizes: Annotated[str, typer.Option(help="Comma-separated event counts.")] = "1000000,10000000",
    repeats: Annotated[int, typer.Option(help="Runs per size (each in a fresh process); medians reported.")] = 3,
    json_path: JsonOpt = None,
) -> None:
    """Generation time and peak memory of the synthetic affiliate world at several sizes."""
    from recsys.bench.synthetic import run_synthetic_benchmark

    try:
        parsed = [int(x) for x in sizes.split(",") if x.strip()]
    except ValueError:
        raise typer.BadParameter(f"expected integers such as 1000000,10000000; got {sizes!r}") from None
    result = run_synthetic_benchmark(parsed, repeats=repeats, json_path=json_path)
    if json_path is None:
        _echo_json(result, None)


def main() -> None:
    """Entry point of the `recsys` console script."""
    app()
