"""What every command shares: the az-style options, the client, printing.

`--subscription` is on every ARM command, as in az; without it the command
acts on the local subscription (lapis.services.DEFAULT_SUBSCRIPTION). It takes
an id or a display name, like az.
"""

from __future__ import annotations

import re
import sys
from typing import Annotated, Any, Optional, Sequence

import typer

from lapis.cli.client import SUBSCRIPTIONS_API, CliError, Client
from lapis.cli.output import Column, OutputFormat, QueryError, check_query, render
from lapis.services import DEFAULT_SUBSCRIPTION

_GUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")

Subscription = Annotated[Optional[str], typer.Option(
    "--subscription", help=f"Name or ID of the subscription. Default: the local one, {DEFAULT_SUBSCRIPTION}.")]
Output = Annotated[OutputFormat, typer.Option("--output", "-o", case_sensitive=False, help="Output format.")]


def _valid_query(value: str | None) -> str | None:
    try:
        return check_query(value)
    except QueryError as error:
        raise typer.BadParameter(str(error)) from None


Query = Annotated[Optional[str], typer.Option(
    "--query", callback=_valid_query,
    help="A path into the result, e.g. properties.endpoint, [].name or [0] (a JMESPath subset).")]
Tags = Annotated[Optional[list[str]], typer.Option(
    "--tags", help='Space-separated tags: key[=value] [key[=value] ...]. Use "" to clear existing tags.')]
Yes = Annotated[bool, typer.Option("--yes", "-y", help="Do not prompt for confirmation.")]
ResourceGroup = Annotated[str, typer.Option("--resource-group", "-g", help="Name of the resource group.")]
AccountName = Annotated[str, typer.Option("--name", "-n", help="Cognitive service account name.")]
Location = Annotated[str, typer.Option("--location", "-l", help="Location, e.g. eastus.")]


def new_typer(help_text: str) -> typer.Typer:
    """A command group with az's plain style (no rich boxes, help on a bare group)."""
    return typer.Typer(help=help_text, no_args_is_help=True, add_completion=False, rich_markup_mode=None,
                       pretty_exceptions_enable=False)


def client() -> Client:
    return Client()


def subscription_id(api: Client, value: str | None) -> str:
    """An id as given, or the id of the subscription whose display name matches."""
    if not value:
        return DEFAULT_SUBSCRIPTION
    if _GUID.match(value):
        return value.lower()
    subs = api.value("/subscriptions", SUBSCRIPTIONS_API)
    found = [s for s in subs if str(s.get("displayName", "")).lower() == value.lower()]
    if len(found) != 1:
        raise CliError(f"Subscription '{value}' not recognized." if not found else
                       f"More than one subscription is named '{value}'; use its id.")
    return str(found[0]["subscriptionId"])


def parse_tags(values: Sequence[str] | None) -> dict[str, str] | None:
    """az's --tags: `k=v` pairs, `k` alone for an empty value, "" to clear."""
    if values is None:
        return None
    tags: dict[str, str] = {}
    for item in values:
        if not item:
            continue
        key, _, value = item.partition("=")
        tags[key] = value
    return tags


def show(result: Any, output: OutputFormat, expression: str | None = None,
         columns: Sequence[Column] | None = None) -> None:
    text = render(result, output, columns, expression)
    if text:
        typer.echo(text)


def confirm(yes: bool, message: str = "Are you sure you want to perform this operation?") -> None:
    """az's confirmation: skipped with --yes; impossible without a terminal."""
    if yes:
        return
    if not sys.stdin.isatty():
        raise CliError("Unable to prompt for confirmation as no tty available. Use --yes.")
    answer = input(f"{message} (y/n): ").strip().lower()
    if answer not in ("y", "yes"):
        raise CliError("Operation cancelled.")
