"""Customer-managed keys on accounts: ARM's `properties.encryption` (§6.3).

    {"keySource": "Microsoft.CognitiveServices"}          the service-managed KEK (the default)
    {"keySource": "Microsoft.KeyVault",
     "keyVaultProperties": {"keyName": K, "keyVersion": V, "keyVaultUri": U, "identityClientId": C}}

`keyVaultUri` must name a vault of this Lapis server: `{base URL}/vaults/{vault}/`
(the prefix of the kids Lapis's vault hands out) or Azure's form
`https://{vault}.vault.azure.net/`. Without `keyVersion` (or with an empty
one) the account follows the key's current version, and rotating the key
re-wraps its data key; with one it stays on that version until an update
names another. `identityClientId` is kept and echoed; Lapis does not check
that the identity may use the key (Lapis's choice).

Applying the property re-wraps the account's data key (the key that seals
key1 and key2): with the vault key version, or, for Microsoft.CognitiveServices,
with the service KEK. The data key itself never changes, so the account's
keys keep working throughout. A key that does not exist, or is disabled,
is ARM's 400 before anything is saved.

When a vault key changes (lapis.keyvault.routes), `after_key_change` re-wraps
the data keys that follow its current version (rotation) and reloads every
account it protects here and on the other replicas, so disabling a key
stops those accounts' data plane at once and enabling it restores them.
"""

from __future__ import annotations

import logging
import re
from typing import Any
from urllib.parse import urlsplit

from lapis.crypto.keyring import KeyUnavailable, VaultRef, account_key_id
from lapis.crypto.vault import VAULT_NAME, BadKeyParameter, KeyDisabled, KeyNotFound
from lapis.errors import keyvault as kv_errors
from lapis.services import Services
from lapis.store.records import Account

log = logging.getLogger("lapis.keyvault")
SERVICE_MANAGED, KEY_VAULT = "Microsoft.CognitiveServices", "Microsoft.KeyVault"
_VAULT_PATH = re.compile(r"^/vaults/([^/]+)/?$")
_AZURE_SUFFIX = ".vault.azure.net"


def vault_name(uri: str) -> str | None:
    """The vault a keyVaultUri names, or None when it names none of this server's."""
    try:
        parts = urlsplit(uri)
    except ValueError:
        return None
    host = (parts.hostname or "").lower()
    if parts.scheme not in ("http", "https") or not host:
        return None
    if host.endswith(_AZURE_SUFFIX) and parts.path in ("", "/"):
        name = host[: -len(_AZURE_SUFFIX)]
    else:
        match = _VAULT_PATH.match(parts.path)
        name = match.group(1) if match else ""
    return name if VAULT_NAME.match(name) else None


def normalize(encryption: Any) -> dict[str, Any] | None:
    """The encryption property as it is stored and echoed; ARM's 400 when it is malformed."""
    if encryption is None:
        return None
    if not isinstance(encryption, dict):
        raise kv_errors.encryption_invalid("The encryption property must be an object.")
    source = str(encryption.get("keySource") or SERVICE_MANAGED)
    canonical = next((s for s in (SERVICE_MANAGED, KEY_VAULT) if s.lower() == source.lower()), None)
    if canonical is None:
        raise kv_errors.encryption_invalid(f"The keySource '{source}' is invalid. Valid values are "
                                           f"'{SERVICE_MANAGED}' and '{KEY_VAULT}'.")
    if canonical == SERVICE_MANAGED:
        return {"keySource": SERVICE_MANAGED}
    props = encryption.get("keyVaultProperties")
    if not isinstance(props, dict) or not isinstance(props.get("keyName"), str) or not props["keyName"] \
            or not isinstance(props.get("keyVaultUri"), str) or not props["keyVaultUri"]:
        raise kv_errors.encryption_invalid(f"keyVaultProperties.keyName and keyVaultProperties.keyVaultUri are "
                                           f"required when keySource is '{KEY_VAULT}'.")
    if vault_name(props["keyVaultUri"]) is None:
        raise kv_errors.encryption_invalid(
            f"The keyVaultUri '{props['keyVaultUri']}' does not name a key vault of this Lapis server: use "
            "<Lapis URL>/vaults/<vault name>/ (or https://<vault name>.vault.azure.net/).")
    version = props.get("keyVersion")
    if version is not None and not isinstance(version, str):
        raise kv_errors.encryption_invalid("keyVaultProperties.keyVersion must be a string.")
    kept = {"keyName": props["keyName"], "keyVersion": version, "keyVaultUri": props["keyVaultUri"]}
    if props.get("identityClientId") is not None:
        kept["identityClientId"] = props["identityClientId"]
    return {"keySource": KEY_VAULT, "keyVaultProperties": kept}


def target(encryption: Any) -> VaultRef | None:
    """The vault key a (normalized) encryption property names; None for the service KEK."""
    if not encryption or encryption.get("keySource") != KEY_VAULT:
        return None
    props = encryption["keyVaultProperties"]
    return VaultRef(str(vault_name(props["keyVaultUri"])), props["keyName"], props.get("keyVersion") or None)


async def check(services: Services, props: dict[str, Any]) -> None:
    """Normalize `props["encryption"]` in place and make sure the key it names can protect data now."""
    if "encryption" not in props:
        return
    props["encryption"] = normalize(props["encryption"])
    ref = target(props["encryption"])
    if ref is None:
        return
    uri = props["encryption"]["keyVaultProperties"]["keyVaultUri"]
    try:
        await services.store.keyring.vault.current_version(ref.vault, ref.name, ref.version)
    except KeyNotFound:
        raise kv_errors.encryption_key_not_found(ref.name, ref.version, uri) from None
    except KeyDisabled:
        raise kv_errors.encryption_key_disabled(ref.name, uri) from None


async def apply(services: Services, account: Account) -> None:
    """Wrap the account's data key as its encryption property says (no-op when it already is)."""
    encryption = account.properties.get("encryption")
    ref = target(encryption)
    try:
        await services.store.keyring.rewrap(account_key_id(account.id), ref)
    except KeyUnavailable:
        raise kv_errors.account_locked(account.name) from None
    except KeyNotFound:  # deleted between check() and now
        uri = encryption["keyVaultProperties"]["keyVaultUri"] if encryption else ""
        raise kv_errors.encryption_key_not_found(ref.name if ref else "", ref.version if ref else None, uri) from None
    except KeyDisabled:
        raise kv_errors.encryption_key_disabled(ref.name if ref else "", "") from None


async def after_key_change(services: Services, vault: str, name: str, rotated: bool) -> None:
    """Follow a change of a vault key: re-wrap followers after a rotation, reload every account it protects."""
    keyring = services.store.keyring
    for row in await keyring.wrapped_by(vault, name):
        if rotated and row["follows_latest"]:
            try:
                await keyring.rewrap(row["id"], VaultRef(vault, name))
            except (KeyUnavailable, KeyNotFound, KeyDisabled, BadKeyParameter) as why:
                log.warning("data key %s stays wrapped by version %s of %s/%s: %s", row["id"], row["key_version"],
                            vault, name, type(why).__name__)
        if row["id"].startswith("acct-"):
            await services.refresh_account(row["id"][len("acct-"):])
