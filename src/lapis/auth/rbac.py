"""Azure RBAC: role definitions, action matching, scopes, and the Authorizer.

Semantics (as Azure documents them):
- An action pattern matches case-insensitively; `*` matches any run of
  characters, slashes included (`*/read`, `Microsoft.CognitiveServices/*`).
- A role grants an action when one of its Actions matches and none of its
  NotActions does (the same for DataActions/NotDataActions). NotActions only
  subtract within their own role: another assignment can still grant it.
- Actions and DataActions are separate: Owner (`*`) grants every management
  action and no data action.
- An assignment at a scope applies to that scope and everything below it
  (subscription > resource group > account > deployment), compared
  case-insensitively.

The Authorizer caches each principal's assignments for at most
`ttl` seconds (5), so an assignment created or removed on any replica takes
effect everywhere within 5 s; a write through this process invalidates at once.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from typing import Any, Callable, Iterable, Protocol, Sequence

from lapis.auth.actions import (CHAT, COMPLETIONS, EMBEDDINGS, MODELS_LIST, ArmPermission, DataAction,
                                arm_permission)

__all__ = [  # the data-plane and ARM mapping are re-exported: one import for the callers
    "CHAT", "COMPLETIONS", "EMBEDDINGS", "MODELS_LIST", "ArmPermission", "DataAction", "arm_permission",
    "Authorizer", "Grant", "GrantSource", "RoleDefinition", "builtin_roles", "role_by_id", "role_by_name",
    "matches", "covers", "ancestors", "is_valid_scope", "normalize_scope", "scope_key", "subscription_of",
]

PROPAGATION_SECONDS = 5.0
CHANGED_CHANNEL = "lapis_rbac"  # PostgreSQL channel: "this principal's assignments changed"
ROLE_DEFINITIONS_PATH = "/providers/Microsoft.Authorization/roleDefinitions/"

OWNER = "8e3af657-a8ff-443c-a75c-2fe8c4bcb635"
CONTRIBUTOR = "b24988ac-6180-42a0-ab88-20f7382dd24c"
READER = "acdd72a7-3385-48ef-bd42-f606fba81ae7"
COGNITIVE_SERVICES_CONTRIBUTOR = "25fbc0a9-bd7c-42a3-aa1a-3b75d497ee68"
COGNITIVE_SERVICES_USER = "a97b65f3-24c7-4388-baec-2e87135dc908"
OPENAI_USER = "5e0bd9bd-7b93-4f28-af87-19fc36ad61bd"
OPENAI_CONTRIBUTOR = "a001fd3d-188f-4b5d-821b-7da978bf7442"
USAGES_READER = "bba48692-92b0-4667-a9ad-c31c7b334ac2"

_SCOPE = re.compile(
    r"^/subscriptions/[^/]+"
    r"(/resourceGroups/[^/]+"
    r"(/providers/[^/]+/[^/]+/[^/]+(/[^/]+/[^/]+)*)?)?$", re.IGNORECASE)


@lru_cache(maxsize=1024)
def _pattern(pattern: str) -> re.Pattern[str]:
    return re.compile(".*".join(re.escape(part) for part in pattern.split("*")), re.IGNORECASE | re.DOTALL)


def matches(pattern: str, action: str) -> bool:
    """Does an Actions/DataActions entry cover this action? (wildcards, any case)"""
    return _pattern(pattern).fullmatch(action) is not None


def _granted(action: str, allow: Iterable[str], deny: Iterable[str]) -> bool:
    return any(matches(p, action) for p in allow) and not any(matches(p, action) for p in deny)


@dataclass(frozen=True, slots=True)
class RoleDefinition:
    """One built-in role as Azure publishes it (one permissions block)."""

    id: str  # the GUID (its ARM `name`)
    role_name: str
    description: str
    actions: tuple[str, ...] = ()
    not_actions: tuple[str, ...] = ()
    data_actions: tuple[str, ...] = ()
    not_data_actions: tuple[str, ...] = ()

    def allows_action(self, action: str) -> bool:
        return _granted(action, self.actions, self.not_actions)

    def allows_data_action(self, data_action: str) -> bool:
        return _granted(data_action, self.data_actions, self.not_data_actions)

    def resource_id(self, subscription: str | None = None) -> str:
        """`/subscriptions/{s}/providers/Microsoft.Authorization/roleDefinitions/{guid}` (no prefix without one)."""
        return (f"/subscriptions/{subscription}" if subscription else "") + ROLE_DEFINITIONS_PATH + self.id

    def to_arm(self, subscription: str | None = None) -> dict:
        """The ARM body of GET roleDefinitions/{id} (api-version 2022-04-01)."""
        return {
            "id": self.resource_id(subscription), "type": "Microsoft.Authorization/roleDefinitions", "name": self.id,
            "properties": {
                "roleName": self.role_name, "type": "BuiltInRole", "description": self.description,
                "assignableScopes": ["/"],
                "permissions": [{"actions": list(self.actions), "notActions": list(self.not_actions),
                                 "dataActions": list(self.data_actions),
                                 "notDataActions": list(self.not_data_actions)}],
                "createdOn": "2015-02-02T21:55:09.8806423Z", "updatedOn": "2024-04-25T00:00:00.0000000Z",
                "createdBy": None, "updatedBy": None,
            },
        }


@lru_cache(maxsize=1)
def builtin_roles() -> tuple[RoleDefinition, ...]:
    """The packaged built-in roles (lapis/auth/roles.json), in file order."""
    data = json.loads((resources.files("lapis.auth") / "roles.json").read_text())
    roles = []
    for entry in data["roles"]:
        perms = entry["permissions"][0]
        roles.append(RoleDefinition(
            id=entry["name"], role_name=entry["roleName"], description=entry["description"],
            actions=tuple(perms["actions"]), not_actions=tuple(perms["notActions"]),
            data_actions=tuple(perms["dataActions"]), not_data_actions=tuple(perms["notDataActions"]),
        ))
    return tuple(roles)


def role_by_id(value: str) -> RoleDefinition | None:
    """A role by GUID or by full id (`.../roleDefinitions/{guid}`), any case."""
    guid = value.rstrip("/").rsplit("/", 1)[-1].lower()
    return next((r for r in builtin_roles() if r.id == guid), None)


def role_by_name(name: str) -> RoleDefinition | None:
    return next((r for r in builtin_roles() if r.role_name.lower() == name.strip().lower()), None)


# -- scopes -------------------------------------------------------------------

def normalize_scope(scope: str) -> str:
    """The scope without a trailing slash, with a leading one."""
    return "/" + scope.strip().strip("/")


def is_valid_scope(scope: str) -> bool:
    """A subscription, a resource group, or a resource (and its children) in one."""
    return _SCOPE.match(normalize_scope(scope)) is not None


def scope_key(scope: str) -> str:
    """What scopes are compared by: lower-cased, normalised."""
    return normalize_scope(scope).lower()


def covers(assigned: str, target: str) -> bool:
    """Does an assignment at `assigned` apply at `target` (the same scope or below)?"""
    a, t = scope_key(assigned), scope_key(target)
    return t == a or t.startswith(a + "/") or a == "/"


def ancestors(scope: str) -> list[str]:
    """Every scope key at or above `scope`, nearest first (for "at or above" queries)."""
    key = scope_key(scope)
    parts = key.strip("/").split("/")
    return ["/" + "/".join(parts[:n]) for n in range(len(parts), 1, -1)
            if n % 2 == 0 and not (n >= 4 and parts[n - 2] == "providers")]


def subscription_of(scope: str) -> str | None:
    parts = normalize_scope(scope).strip("/").split("/")
    return parts[1] if len(parts) >= 2 and parts[0].lower() == "subscriptions" else None


# -- the authorizer -------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Grant:
    """What the Authorizer needs of an assignment: where, which role."""

    scope: str
    role_definition_id: str


class GrantSource(Protocol):
    async def grants_for(self, principal_id: str) -> Sequence[Grant]: ...


class Authorizer:
    """Answers "may this principal do this here?" from the role assignments.

        authorizer = Authorizer(AssignmentStore(db))
        await authorizer.allowed_data_action(oid, CHAT.action, account_id)
        await authorizer.allowed_action(oid, "Microsoft.CognitiveServices/accounts/listKeys/action", account_id)

    Each principal's assignments are read from the store at most once every
    `ttl` seconds; `invalidate()` forgets them all (after a local write, or a
    notification from another replica).
    """

    def __init__(self, source: GrantSource, ttl: float = PROPAGATION_SECONDS,
                 clock: Callable[[], float] = time.monotonic,
                 roles: Iterable[RoleDefinition] | None = None):
        self.source = source
        self.ttl = ttl
        self.clock = clock
        self.roles = {r.id: r for r in (roles if roles is not None else builtin_roles())}
        self._cache: dict[str, tuple[float, tuple[Grant, ...]]] = {}
        self._lock = asyncio.Lock()
        self._generation = 0

    def invalidate(self, principal_id: str | None = None) -> None:
        """Forget one principal's assignments, or everyone's."""
        self._generation += 1
        if principal_id is None:
            self._cache.clear()
        else:
            self._cache.pop(principal_id.lower(), None)

    async def follow(self, db: Any) -> None:
        """Forget a principal's assignments as soon as another replica announces a
        change (PostgreSQL NOTIFY; SQLite has no other replica). The 5 s expiry
        stays the guarantee when a notification is missed."""
        await db.listen(CHANGED_CHANNEL, lambda principal_id: self.invalidate(principal_id or None))

    async def grants(self, principal_id: str) -> tuple[Grant, ...]:
        key = principal_id.lower()
        cached = self._cache.get(key)
        if cached is not None and self.clock() - cached[0] < self.ttl:
            return cached[1]
        async with self._lock:  # one store read per principal, however many requests wait
            cached = self._cache.get(key)
            if cached is not None and self.clock() - cached[0] < self.ttl:
                return cached[1]
            started, generation = self.clock(), self._generation
            found = tuple(await self.source.grants_for(key))
            if generation == self._generation:  # not invalidated while reading
                self._cache[key] = (started, found)
            return found

    async def roles_at(self, principal_id: str, scope: str) -> list[RoleDefinition]:
        """The roles the principal holds at `scope` (assigned there or above)."""
        return [self.roles[g.role_definition_id.lower()] for g in await self.grants(principal_id)
                if g.role_definition_id.lower() in self.roles and covers(g.scope, scope)]

    async def allowed_action(self, principal_oid: str, action: str, scope: str) -> bool:
        return any(r.allows_action(action) for r in await self.roles_at(principal_oid, scope))

    async def allowed_data_action(self, principal_oid: str, data_action: str, scope: str) -> bool:
        return any(r.allows_data_action(data_action) for r in await self.roles_at(principal_oid, scope))
