"""Entry point of the `lapis` command (temporary: serve only)."""

from __future__ import annotations

import typer

from lapis import settings as settings_module

app = typer.Typer(no_args_is_help=True, add_completion=False)


@app.callback()
def root() -> None:
    """Lapis: an Azure OpenAI Service you can run yourself."""


@app.command()
def serve(host: str = typer.Option(None, help="Address to listen on"),
          port: int = typer.Option(None, help="Port to listen on"),
          demo: bool = typer.Option(False, "--demo", help="Seed the demo account and print the exports")) -> None:
    """Run the Lapis server."""
    from lapis.server import run

    run(settings_module.load(host=host, port=port, demo=demo or None))


def main() -> None:
    app()
