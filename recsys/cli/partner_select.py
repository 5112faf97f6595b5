"""`recsys partner carry` and `recsys partner recruit`: products to carry and partners to recruit, as JSON and a
bar plot (:mod:`recsys.partners.selection`).

:func:`register` adds both commands to the ``partner`` Typer app (recsys/cli/partner.py); bodies import lazily
so that `recsys --help` stays fast.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

__all__ = ["register", "bar_plot"]

ModelOpt = Annotated[str, typer.Option("--model", help="A bundle directory or an MLflow URI (models:/name@alias).")]
OutOpt = Annotated[Path, typer.Option("--out", help="Directory for the JSON and the plot.")]


def register(partner_app: typer.Typer) -> None:
    """Add ``carry`` and ``recruit`` to ``partner_app``."""
    partner_app.command("carry")(carry)
    partner_app.command("recruit")(recruit)


def carry(model: ModelOpt, out: OutOpt,
          media_id: Annotated[str, typer.Option("--media-id", help="The partner to propose products to.")],
          n: Annotated[int, typer.Option("--n", min=1, help="Items to propose.")] = 50,
          sample: Annotated[int, typer.Option("--sample", min=1, help="Audience users scored.")] = 128) -> None:
    """Items the partner does not carry yet, by expected commission per 1,000 impressions: DIR/carry.json and
    DIR/carry.png."""
    def run() -> dict:
        import recsys
        from recsys.partners.selection import products_to_carry

        items = products_to_carry(recsys.load(model), media_id, n=n, sample=sample)
        return {"media_id": media_id, "model": model, "items": items}

    _write(out, "carry", run, lambda r: ([f"{i['item_id']} {i['title'][:28]}" for i in r["items"]],
                                          [i["commission_per_1000"] for i in r["items"]],
                                          f"products to carry for {media_id}", "commission per 1,000 impressions"))


def recruit(model: ModelOpt, out: OutOpt,
            item_id: Annotated[str | None, typer.Option("--item-id", help="A merchant's item.")] = None,
            shop: Annotated[str | None, typer.Option("--shop", help="A merchant's shop (all its items).")] = None,
            brand: Annotated[str | None, typer.Option("--brand", help="A brand (all its items).")] = None,
            n: Annotated[int, typer.Option("--n", min=1, help="Partners to propose.")] = 20,
            by: Annotated[str, typer.Option("--by", help="commission | purchases")] = "commission") -> None:
    """Partners whose audiences would bring the item, shop or brand the most: DIR/recruit.json and DIR/recruit.png."""
    def run() -> dict:
        import recsys
        from recsys.partners.selection import partners_to_recruit

        rec = recsys.load(model)
        item = _item(rec, item_id) if item_id is not None else None
        rows = partners_to_recruit(rec, item_id=item, shop=shop, brand=brand, n=n, by=by)
        return {"item_id": item, "shop": shop, "brand": brand, "by": by, "model": model, "partners": rows}

    what = f"item {item_id}" if item_id is not None else f"shop {shop}" if shop is not None else f"brand {brand}"
    key = "expected_commission" if by == "commission" else "expected_purchases"
    _write(out, "recruit", run, lambda r: ([p["media_id"] for p in r["partners"]], [p[key] for p in r["partners"]],
                                            f"partners to recruit for {what}", key.replace("_", " ")))


def _item(rec: Any, raw: str) -> Any:
    from recsys.ids import coerce_id, id_kind

    return coerce_id(raw, id_kind(rec._ready().catalogue.index), "item_id", "")[0]


def _write(out: Path, name: str, run: Any, bars: Any) -> None:
    from recsys.errors import RecsysError

    try:
        result = run()
    except RecsysError as e:
        typer.echo(f"error: {e}".encode("utf-8", "backslashreplace").decode("utf-8"), err=True)
        raise typer.Exit(code=2) from None
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{name}.json").write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    labels, values, title, xlabel = bars(result)
    bar_plot(labels, values, out / f"{name}.png", title=title, xlabel=xlabel)
    typer.echo(f"wrote {out / f'{name}.json'} and {out / f'{name}.png'}")


def bar_plot(labels: list[str], values: list[float], path: Path, *, title: str, xlabel: str) -> Path:
    """A horizontal bar chart (best at the top) written as a PNG (matplotlib, Agg; imported on call)."""
    from recsys.tracking.plots import _plt, _save

    plt = _plt()
    shown = min(len(labels), 25)
    fig, ax = plt.subplots(figsize=(7, 1.2 + 0.28 * max(shown, 1)))
    ax.barh(range(shown)[::-1], values[:shown], color="#3a7bd5")
    ax.set_yticks(range(shown)[::-1], [str(x) for x in labels[:shown]], fontsize=8)
    ax.set_xlabel(xlabel)
    ax.set_title(title if shown else f"{title}: none", fontsize=10)
    path = _save(fig, path)
    plt.close(fig)
    return path
