"""`--assignee` to an object id, as az resolves it against Microsoft Graph.

    name@domain          a user principal name: the user's object id (Lapis's one
                         user is the local admin, admin@lapis.local)
    a GUID               a service principal's appId, or a managed identity's
                         clientId: its object (principal) id; any other GUID is
                         taken as an object id
    anything else        an error, az's "Cannot find user or service principal…"

Lapis's directory is read through its admin API (/lapis/admin/servicePrincipals,
/lapis/admin/managedIdentities, and the admin's own token for its object id).
A server without that API (a bare role-assignment test server) leaves a GUID as
it is, which is what the CLI did before it resolved app ids.
"""

from __future__ import annotations

import base64
import json
import re

from lapis.cli.client import CliError, Client
from lapis.services import ADMIN_PRINCIPAL

_GUID = re.compile(r"^[0-9a-fA-F]{8}-([0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}$")


def not_found(value: str) -> CliError:
    return CliError(f"Cannot find user or service principal in graph database for '{value}'. If the assignee is an "
                    f"appId, make sure the corresponding service principal is created with "
                    f"'lapis ad sp create-for-rbac'.")


def _admin_object_id(api: Client) -> str:
    """The local admin's object id: the `oid` of a token issued to it."""
    got = api.request("POST", "/lapis/admin/token", {"resource": "https://management.core.windows.net/"},
                      api_version=None)
    payload = str(got["accessToken"]).split(".")[1]
    return str(json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))["oid"]).lower()


def _by_client_id(api: Client, client_id: str) -> str | None:
    for sp in api.value("/lapis/admin/servicePrincipals", api_version=None):
        if str(sp.get("appId", "")).lower() == client_id:
            return str(sp["objectId"]).lower()
    for mi in api.value("/lapis/admin/managedIdentities", api_version=None):
        if str(mi.get("clientId", "")).lower() == client_id:
            return str(mi["principalId"]).lower()
    return None


def resolve(api: Client, assignee: str) -> str:
    """The object id `assignee` names (see the module docstring)."""
    value = assignee.strip()
    if "@" in value:
        if value.lower() == ADMIN_PRINCIPAL:
            return _admin_object_id(api)
        raise not_found(value)
    if not _GUID.match(value):
        raise not_found(value)
    try:
        found = _by_client_id(api, value.lower())
    except CliError:
        return value.lower()  # no directory to read: the GUID is the object id
    return found or value.lower()
