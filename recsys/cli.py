"""The `recsys` command line."""
import typer

app = typer.Typer(help="recsys: guess-you-like recommendation.", no_args_is_help=True)


@app.command()
def version() -> None:
    """Print the library version."""
    from recsys import __version__

    typer.echo(__version__)


def main() -> None:
    app()
