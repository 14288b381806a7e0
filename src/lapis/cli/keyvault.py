"""`lapis keyvault key ...`: keys in Lapis's key vault, with az's flags.

    lapis keyvault key create --vault-name V --name K [--kty RSA] [--size 2048] [--ops ...] [--disabled] [--tags ...]
    lapis keyvault key rotate --vault-name V --name K
    lapis keyvault key show --vault-name V --name K [--version X]
    lapis keyvault key list --vault-name V
    lapis keyvault key list-versions --vault-name V --name K
    lapis keyvault key set-attributes --vault-name V --name K [--version X] [--enabled true|false] [--tags ...]
    lapis keyvault key disable --vault-name V --name K     (Lapis's own: every version, so the key is revoked)
    lapis keyvault key enable --vault-name V --name K      (every version)

They call the vault's REST API (lapis.keyvault.routes) with the admin
credential and print Key Vault's JSON (KeyBundle, KeyItem lists) as the REST
API returns it. To protect an account with a key, give the account
`properties.encryption = {"keySource": "Microsoft.KeyVault", "keyVaultProperties":
{"keyName": K, "keyVaultUri": "<Lapis URL>/vaults/V/"}}` (the kid's prefix).
"""

from __future__ import annotations

from typing import Annotated, Any, Optional

import typer

from lapis.cli.client import path
from lapis.cli.common import Output, Query, Tags, client, new_typer, parse_tags, show
from lapis.cli.output import OutputFormat

API = "7.4"
keyvault_app = new_typer("Manage keys in Lapis's key vault.")
key_app = new_typer("Manage keys.")
keyvault_app.add_typer(key_app, name="key")

VaultName = Annotated[str, typer.Option("--vault-name", help="Name of the Key Vault.")]
KeyName = Annotated[str, typer.Option("--name", "-n", help="Name of the key.")]
Version = Annotated[Optional[str], typer.Option("--version", "-v", help="The key version. Default: the current one.")]


def _call(method: str, vault: str, *segments: str, body: Any = None) -> Any:
    return client().request(method, path("vaults", vault, "keys", *segments), body, api_version=API)


def _bool(value: str, flag: str) -> bool:
    lowered = value.lower()
    if lowered not in ("true", "false"):
        raise typer.BadParameter(f"{flag} takes true or false, not '{value}'.")
    return lowered == "true"


@key_app.command("create")
def create(vault_name: VaultName, name: KeyName,
           kty: Annotated[str, typer.Option("--kty", help="The key type: RSA or RSA-HSM.")] = "RSA",
           size: Annotated[Optional[int], typer.Option("--size", help="RSA key size: 2048, 3072 or 4096.")] = None,
           ops: Annotated[Optional[list[str]], typer.Option("--ops", help="Permitted JSON web key operations.")] = None,
           disabled: Annotated[bool, typer.Option("--disabled", help="Create the key disabled.")] = False,
           tags: Tags = None, output: Output = OutputFormat.json, query: Query = None) -> None:
    """Create a key (an existing name gets a new version)."""
    body: dict[str, Any] = {"kty": kty, "attributes": {"enabled": not disabled}}
    if size is not None:
        body["key_size"] = size
    if ops:
        body["key_ops"] = list(ops)
    if tags is not None:
        body["tags"] = parse_tags(tags)
    show(_call("POST", vault_name, name, "create", body=body), output, query)


@key_app.command("rotate")
def rotate(vault_name: VaultName, name: KeyName, output: Output = OutputFormat.json, query: Query = None) -> None:
    """Make a new version of the key; accounts that follow its current version are re-wrapped with it."""
    show(_call("POST", vault_name, name, "rotate"), output, query)


@key_app.command("show")
def show_key(vault_name: VaultName, name: KeyName, version: Version = None, output: Output = OutputFormat.json,
             query: Query = None) -> None:
    """Show a key's public part and attributes (the current version unless --version)."""
    show(_call("GET", vault_name, name, *([version] if version else [])), output, query)


@key_app.command("list")
def list_keys(vault_name: VaultName, output: Output = OutputFormat.json, query: Query = None) -> None:
    """List the keys of a vault."""
    show((_call("GET", vault_name) or {}).get("value", []), output, query)


@key_app.command("list-versions")
def list_versions(vault_name: VaultName, name: KeyName, output: Output = OutputFormat.json,
                  query: Query = None) -> None:
    """List the versions of a key."""
    show((_call("GET", vault_name, name, "versions") or {}).get("value", []), output, query)


@key_app.command("set-attributes")
def set_attributes(vault_name: VaultName, name: KeyName, version: Version = None,
                   enabled: Annotated[Optional[str], typer.Option("--enabled", help="true or false.")] = None,
                   tags: Tags = None, output: Output = OutputFormat.json, query: Query = None) -> None:
    """Change one version's attributes (the current version unless --version)."""
    body: dict[str, Any] = {}
    if enabled is not None:
        body["attributes"] = {"enabled": _bool(enabled, "--enabled")}
    if tags is not None:
        body["tags"] = parse_tags(tags)
    show(_call("PATCH", vault_name, name, *([version] if version else []), body=body), output, query)


def _set_every_version(vault: str, name: str, enabled: bool) -> list[Any]:
    versions = (_call("GET", vault, name, "versions") or {}).get("value", [])
    changed = []
    for item in versions:
        version = str(item["kid"]).rstrip("/").rsplit("/", 1)[-1]
        changed.append(_call("PATCH", vault, name, version, body={"attributes": {"enabled": enabled}}))
    return changed


@key_app.command("disable")
def disable(vault_name: VaultName, name: KeyName, output: Output = OutputFormat.json, query: Query = None) -> None:
    """Disable every version: the accounts the key protects refuse service until it is enabled."""
    show(_set_every_version(vault_name, name, False), output, query)


@key_app.command("enable")
def enable(vault_name: VaultName, name: KeyName, output: Output = OutputFormat.json, query: Query = None) -> None:
    """Enable every version again: the accounts the key protects serve again, with the same keys."""
    show(_set_every_version(vault_name, name, True), output, query)
