"""`recsys partner ...`: reports for one media partner, each written as ``DIR/<command>.json`` and its plots (PNG).

``insight`` (its audience: :func:`recsys.partners.audience_insight`) and ``funnel`` (brands' lifecycle stages and
flows: :func:`recsys.partners.lifecycle_funnel`) live here; ``carry`` and ``recruit`` come from
:mod:`recsys.cli.partner_select`. A report on a model loaded from MLflow (``runs:/`` or ``models:/``) is also
logged to the training run that model came from (``--no-mlflow``: not; ``--run-id``: to that run instead).
Bodies import lazily so that `recsys --help` stays fast.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from recsys.cli.partner_select import register as register_selection

__all__ = ["partner_app", "report_app"]

partner_app = typer.Typer(help="Reports for one media partner: audience insight, lifecycle funnels, products to "
                               "carry, partners to recruit.", no_args_is_help=True)
register_selection(partner_app)
report_app = typer.Typer(help="Reports: `recsys report partner` is `recsys partner insight` under the name the "
                              "insight is also known by.", no_args_is_help=True)

ModelOpt = Annotated[str, typer.Option("--model", help="A bundle directory or an MLflow URI (models:/name@alias).")]
OutOpt = Annotated[Path, typer.Option("--out", help="Directory for the JSON and the plots.")]
MediaOpt = Annotated[str, typer.Option("--media-id", help="The partner reported on.")]
MlflowOpt = Annotated[bool, typer.Option("--mlflow/--no-mlflow", help="Log the report to the model's MLflow "
                                                                       "training run (when it has one).")]
RunOpt = Annotated[str | None, typer.Option("--run-id", help="Log to this MLflow run instead of the model's.")]


@partner_app.command("insight")
def insight(model: ModelOpt, out: OutOpt, media_id: MediaOpt,
            min_group: Annotated[int, typer.Option("--min-group", min=1, help="Smallest group of users a number "
                                                                             "may describe.")] = 10,
            top_n: Annotated[int, typer.Option("--top-n", min=1, help="Rows per top list.")] = 10,
            influence_window: Annotated[str, typer.Option("--influence-window", help="How soon after a purchase "
                                                                                     "a friend's counts as "
                                                                                     "following it.")] = "7D",
            mlflow: MlflowOpt = True, run_id: RunOpt = None) -> None:
    """The partner's audience: size, profile, spending power, top categories/brands/shops with lift, rates with
    intervals, merchants, influencers; DIR/insight.json and DIR/insight_*.png."""
    def run(rec: Any) -> dict:
        from recsys.partners import audience_insight

        return audience_insight(rec, media_id, min_group=min_group, top_n=top_n, influence_window=influence_window)

    _report("insight", model, out, run, mlflow, run_id)


report_app.command("partner")(insight)


@partner_app.command("funnel")
def funnel(model: ModelOpt, out: OutOpt, media_id: MediaOpt,
           brand: Annotated[list[str] | None, typer.Option("--brand", help="A brand to follow (repeat it); none: "
                                                                           "the top brands.")] = None,
           window: Annotated[str, typer.Option("--window", help="Length of one window ('7D', '12h').")] = "7D",
           windows: Annotated[int, typer.Option("--windows", min=1, help="Consecutive windows.")] = 4,
           top_brands: Annotated[int, typer.Option("--top-brands", min=1, help="Brands followed without "
                                                                               "--brand.")] = 5,
           end: Annotated[str | None, typer.Option("--end", help="End of the last window (default: just after "
                                                                 "the partner's last event).")] = None,
           mlflow: MlflowOpt = True, run_id: RunOpt = None) -> None:
    """Brands' lifecycle funnel on the partner: users in awareness, interest, purchase and loyalty per window and
    the flows between windows; DIR/funnel.json, DIR/funnel_counts.png and DIR/funnel_flows.png."""
    def run(rec: Any) -> dict:
        from recsys.partners import lifecycle_funnel, partner_tables

        t = partner_tables(rec)
        return lifecycle_funnel(t.events, t.items, media_id=media_id, brands=brand or None, window=window,
                                windows=windows, end=end, top_brands=top_brands,
                                positive_events=t.positive_events, purchase_event=t.purchase_event)

    _report("funnel", model, out, run, mlflow, run_id)


def _report(kind: str, model: str, out: Path, run: Any, mlflow: bool, run_id: str | None) -> None:
    """Load the model, build the report, write it under ``out`` and log it to MLflow; errors as ``error: ...``."""
    import recsys
    from recsys.errors import RecsysError
    from recsys.partners.report import log_partner_report, model_run_id, write_report

    try:
        report = run(recsys.load(model))
        report["model"] = model
        paths = write_report(kind, report, out)
        typer.echo("wrote " + ", ".join(str(p) for p in paths))
        target = run_id or (model_run_id(model) if mlflow else None)
        if mlflow and target:
            where = log_partner_report(target, **{kind: report})
            typer.echo(f"logged to MLflow run {target} under {where}/")
        elif mlflow:
            typer.echo("not logged to MLflow: a bundle path names no training run (pass --run-id RUN to log it)")
    except RecsysError as e:
        typer.echo(f"error: {e}".encode("utf-8", "backslashreplace").decode("utf-8"), err=True)
        raise typer.Exit(code=2) from None
