"""Key Vault's JSON for keys (api-version 7.4 examples in azure-rest-api-specs). No I/O.

A key's id (`kid`) is `{vault URI}keys/{name}/{version}`, and Lapis's vault
URI is `{base URL}/vaults/{vault}/`: the value to give an account as
`keyVaultProperties.keyVaultUri`.
"""

from __future__ import annotations

from typing import Any

from lapis.crypto.vault import KeyVersion

RECOVERY_LEVEL = "Recoverable+Purgeable"


def vault_uri(base_url: str, vault: str) -> str:
    return f"{base_url}/vaults/{vault}/"


def _attributes(v: KeyVersion) -> dict[str, Any]:
    return {"enabled": v.enabled, "created": v.created, "updated": v.updated, "recoveryLevel": RECOVERY_LEVEL}


def key_bundle(v: KeyVersion, base_url: str) -> dict[str, Any]:
    """What create, rotate, get and update answer."""
    bundle: dict[str, Any] = {
        "key": {"kid": f"{vault_uri(base_url, v.vault)}keys/{v.name}/{v.version}", "kty": v.kty,
                "key_ops": list(v.key_ops), "n": v.n, "e": v.e},
        "attributes": _attributes(v),
    }
    if v.tags:
        bundle["tags"] = dict(v.tags)
    return bundle


def key_item(v: KeyVersion, base_url: str, versioned: bool) -> dict[str, Any]:
    """One entry of a key list (kid without version) or a version list (kid with it)."""
    kid = f"{vault_uri(base_url, v.vault)}keys/{v.name}" + (f"/{v.version}" if versioned else "")
    item: dict[str, Any] = {"kid": kid, "attributes": _attributes(v)}
    if v.tags:
        item["tags"] = dict(v.tags)
    return item


def key_list(items: list[dict[str, Any]]) -> dict[str, Any]:
    return {"value": items, "nextLink": None}
