"""Errors of encryption at rest: Key Vault's data plane, ARM's `encryption`, and the
data plane's refusal while an account's customer-managed key is disabled.

Key Vault bodies are `{"error":{"code","message"[,"innererror"]}}`. Where no
capture was found the wording is Lapis's choice, marked so below.
"""

from __future__ import annotations

from lapis.errors.base import ApiError, _dump, _gateway, arm

KEY_VAULT_AUDIENCE = "https://vault.azure.net"


# --------------------------------------------------------------------------
# Key Vault data plane (/vaults/{vault}/keys/...)
# --------------------------------------------------------------------------

def _kv(status: int, code: str, message: str, inner: str | None = None,
        headers: dict[str, str] | None = None) -> ApiError:
    error: dict[str, object] = {"code": code, "message": message}
    if inner:
        error["innererror"] = {"code": inner}
    return ApiError(status, _dump({"error": error}), code, headers)


def kv_key_not_found(name: str) -> ApiError:
    """Captured (sigstore/cosign#3094): 404 KeyNotFound."""
    return _kv(404, "KeyNotFound", f"A key with (name/id) {name} was not found in this key vault. If you recently "
               "deleted this key you may be able to recover it using the correct recovery command. For help "
               "resolving this issue, please see https://go.microsoft.com/fwlink/?linkid=2125182")


def kv_key_disabled(operation: str) -> ApiError:
    """Key Vault's refusal of unwrap/decrypt/sign on a disabled key (403, innererror KeyDisabled),
    as reported against the real service (Azure/azure-sdk-for-python#45342)."""
    return _kv(403, "Forbidden", f"Operation {operation} is not allowed on a disabled key.", "KeyDisabled")


def kv_bad_parameter(message: str) -> ApiError:
    """400 BadParameter; the message is Lapis's."""
    return _kv(400, "BadParameter", message)


def kv_unauthorized(base_url: str, tenant: str, missing: bool) -> ApiError:
    """401 with Key Vault's bearer challenge. "AKV10000" is Key Vault's wording for a missing
    token; for any other token Lapis's message says that only the admin credential is accepted."""
    challenge = f'Bearer authorization="{base_url}/{tenant}", resource="{KEY_VAULT_AUDIENCE}"'
    message = ("AKV10000: Request is missing a Bearer or PoP token." if missing else
               "The bearer token is not the Lapis admin credential (LAPIS_HOME/server.json).")
    return _kv(401, "Unauthorized", message, headers={"WWW-Authenticate": challenge})


# --------------------------------------------------------------------------
# ARM: properties.encryption of an account (Lapis's choices: no capture found)
# --------------------------------------------------------------------------

def encryption_invalid(message: str) -> ApiError:
    return arm(400, "InvalidEncryptionProperties", message)


def encryption_key_not_found(key_name: str, version: str | None, vault_uri: str) -> ApiError:
    which = f"The key '{key_name}'" + (f" (version '{version}')" if version else "")
    return arm(400, "KeyVaultKeyNotFound", f"{which} was not found in the key vault '{vault_uri}'.")


def encryption_key_disabled(key_name: str, vault_uri: str) -> ApiError:
    return arm(400, "KeyVaultKeyDisabled", f"The key '{key_name}' in the key vault '{vault_uri}' is disabled, so it "
               "cannot protect the account's data. Enable it and try again.")


def account_locked(account: str) -> ApiError:
    """A write that needs the account's secrets while its customer-managed key is disabled."""
    return arm(409, "KeyVaultKeyDisabled", f"The customer-managed key that encrypts the account '{account}' is "
               "disabled, so its keys cannot be read or changed. Enable the key in its key vault and try again.")


# --------------------------------------------------------------------------
# Data plane
# --------------------------------------------------------------------------

def customer_managed_key_inaccessible() -> ApiError:
    """An account whose customer-managed key is disabled refuses every request (Lapis's choice:
    no capture of Azure OpenAI's answer was found; 403 like the other access refusals of §2.2)."""
    return _gateway(403, "CustomerManagedKeyInaccessible",
                    "Access denied because the customer-managed key that encrypts this resource is disabled or "
                    "inaccessible. Enable the key in its key vault to restore access.")
