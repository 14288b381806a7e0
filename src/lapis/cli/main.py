"""Entry point of the `lapis` command: `lapis serve`, and a client of the
management API modelled on `az` (flags spelled as az spells them).

    lapis serve
    lapis provider register|unregister|show
    lapis group create|show|list|exists|delete
    lapis account list|show                              (subscriptions, as az account)
    lapis cognitiveservices account create|show|list|update|delete|list-models
    lapis cognitiveservices account deployment create|list|show|delete
    lapis cognitiveservices account keys list|regenerate
    lapis cognitiveservices model list
    lapis cognitiveservices usage list
    lapis quota request create|list|show                 (Lapis's own: quota increase requests)
    lapis admin approve-subscription|revoke-subscription|stats
    lapis admin subscription create
    lapis admin quota-request list|approve|reject
    lapis monitor metrics list|list-definitions         (and the groups lapis.cli.diagnostics adds)
    lapis consumption usage list                         (tokens and cost per deployment, model or tag)
    lapis consumption budget create|list|show|update|delete   (with Lapis's webhook and hard cap)
    lapis keyvault key create|rotate|show|list|list-versions|set-attributes|disable|enable
    lapis network private-endpoint create|show|list|delete  (plus --address/--port: a listener per endpoint)
    lapis backend create|list|show|delete               (Lapis's own: engines per region and model)
    lapis pool create|list|show|delete, pool member add|remove|list
    lapis fault set|list|clear|reset                     (Lapis's own: injected faults)

The client commands talk HTTP only; they find the server and the admin
credential in LAPIS_HOME/server.json (LAPIS_URL overrides the URL). Errors
print to stderr as az prints them and exit with status 1.
"""

from __future__ import annotations

import sys
from typing import Sequence

import typer

from lapis import settings as settings_module
from lapis.cli.admin import admin_app
from lapis.cli.client import CliError
from lapis.cli.cognitiveservices import cognitiveservices_app
from lapis.cli.consumption import consumption_app
from lapis.cli.diagnostics import add_monitor_commands
from lapis.cli.groups import group_app, provider_app
from lapis.cli.identity import ad_app, add_account_commands, identity_app
from lapis.cli.keyvault import keyvault_app
from lapis.cli.monitor import monitor_app
from lapis.cli.network import network_app
from lapis.cli.quota import quota_app
from lapis.cli.role import role_app
from lapis.cli.serving import backend_app, fault_app, pool_app
from lapis.cli.subscriptions import account_app

# Options that take several space-separated values, as az's nargs='+'.
MULTI_VALUE = ("--tags",)

app = typer.Typer(no_args_is_help=True, add_completion=False, rich_markup_mode=None,
                  pretty_exceptions_enable=False)
app.add_typer(provider_app, name="provider")
app.add_typer(group_app, name="group")
app.add_typer(account_app, name="account")
app.add_typer(cognitiveservices_app, name="cognitiveservices")
app.add_typer(quota_app, name="quota")
app.add_typer(admin_app, name="admin")
app.add_typer(ad_app, name="ad")
app.add_typer(identity_app, name="identity")
add_account_commands(account_app)
app.add_typer(role_app, name="role")
app.add_typer(monitor_app, name="monitor")
add_monitor_commands(monitor_app)  # diagnostic-settings, log-analytics, activity-log
app.add_typer(consumption_app, name="consumption")
app.add_typer(keyvault_app, name="keyvault")
app.add_typer(network_app, name="network")
app.add_typer(backend_app, name="backend")
app.add_typer(pool_app, name="pool")
app.add_typer(fault_app, name="fault")


@app.callback()
def root() -> None:
    """Lapis: an Azure OpenAI Service you can run yourself."""


@app.command()
def serve(host: str = typer.Option(None, help="Address to listen on"),
          port: int = typer.Option(None, help="Port to listen on"),
          demo: bool = typer.Option(False, "--demo", help="Seed the demo account and print the exports"),
          tls: bool = typer.Option(False, "--tls", help="Serve HTTPS with a local CA (made on first use)")) -> None:
    """Run the Lapis server."""
    from lapis.server import run

    try:
        settings = settings_module.load(host=host, port=port, demo=demo or None, tls=tls or None)
    except ValueError as bad:  # a setting from the environment that cannot be: say which, no traceback
        typer.echo(f"lapis serve: {bad}", err=True)
        raise typer.Exit(2) from None
    run(settings)


def expand_multi_values(args: Sequence[str]) -> list[str]:
    """`--tags a=1 b=2` (az) becomes `--tags a=1 --tags b=2` (what the parser takes)."""
    result: list[str] = []
    current: str | None = None
    for arg in args:
        if arg.startswith("-") and arg != "-":
            current = arg if arg in MULTI_VALUE else None
            result.append(arg)
            taken = 0
        elif current is not None:
            if taken:
                result.append(current)
            result.append(arg)
            taken += 1
        else:
            result.append(arg)
    return result


def main(argv: Sequence[str] | None = None) -> None:
    args = expand_multi_values(sys.argv[1:] if argv is None else argv)
    try:
        app(args=args, prog_name="lapis")
    except CliError as error:
        typer.echo(error.render(), err=True)
        sys.exit(1)
