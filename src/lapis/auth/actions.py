"""What each request needs: data actions (data plane) and ARM actions (management plane).

Data plane: each operation is a `DataAction` — the action string Azure checks
and the method + ROUTE TEMPLATE its 401 PermissionDenied message names
(azure-wire-reference.md §2.2, §7.1). Only the chat string is confirmed by a
capture; completions and embeddings follow the role definitions' own names
(Cognitive Services OpenAI User lists them), models list falls under the
role's `accounts/OpenAI/*/read`. The v1 routes (`/openai/v1/...`) need the same
data actions as their legacy twins (Lapis's choice: no capture shows the v1
wording); their templates are the v1 paths.

Management plane: `arm_permission(method, path)` gives the action and the
scope an ARM request needs, derived from the path the way ARM names its
operations: `{namespace}/{type}[/{child type}...]/{read|write|delete}` for a
resource or a collection, `{namespace}/{types...}/{name}/action` for a POST.
"""

from __future__ import annotations

from dataclasses import dataclass

OPENAI = "Microsoft.CognitiveServices/accounts/OpenAI"


@dataclass(frozen=True, slots=True)
class DataAction:
    """A data-plane operation: the data action it needs and how Azure names the route."""

    action: str
    method: str
    route_template: str


CHAT = DataAction(f"{OPENAI}/deployments/chat/completions/action", "POST",
                  "/openai/deployments/{deployment-id}/chat/completions")
COMPLETIONS = DataAction(f"{OPENAI}/deployments/completions/action", "POST",
                         "/openai/deployments/{deployment-id}/completions")
EMBEDDINGS = DataAction(f"{OPENAI}/deployments/embeddings/action", "POST",
                        "/openai/deployments/{deployment-id}/embeddings")
MODELS_LIST = DataAction(f"{OPENAI}/models/read", "GET", "/openai/models")
V1_CHAT = DataAction(CHAT.action, "POST", "/openai/v1/chat/completions")
V1_EMBEDDINGS = DataAction(EMBEDDINGS.action, "POST", "/openai/v1/embeddings")
V1_MODELS_LIST = DataAction(MODELS_LIST.action, "GET", "/openai/v1/models")

# -- management plane ---------------------------------------------------------

# ARM's canonical spelling of the segments Lapis serves (requests may use any case).
_CANONICAL = {s.lower(): s for s in (
    "Microsoft.CognitiveServices", "Microsoft.Resources", "Microsoft.Authorization", "accounts", "deployments",
    "listKeys", "regenerateKey", "models", "usages", "skus", "locations", "raiPolicies", "raiBlocklists",
    "commitmentPlans", "quotaRequests", "roleAssignments", "roleDefinitions", "register", "unregister",
    "privateEndpointConnections", "privateLinkResources", "deletedAccounts", "modelCapacities",
    "checkDomainAvailability", "checkSkuAvailability", "calculateModelCapacity",
)}
_VERB = {"GET": "read", "HEAD": "read", "PUT": "write", "PATCH": "write", "DELETE": "delete"}


@dataclass(frozen=True, slots=True)
class ArmPermission:
    """An ARM action and the scope it is checked over (a resource id, as requested)."""

    action: str
    scope: str


def _canon(segment: str) -> str:
    return _CANONICAL.get(segment.lower(), segment)


def _provider_action(method: str, namespace: str, rest: list[str], base: list[str]) -> ArmPermission:
    """`rest` follows `providers/{namespace}`; `base` is the path before `providers`."""
    ns, method = _canon(namespace), method.upper()
    types = [_canon(t) for t in rest[0::2]]
    if not rest:  # the provider itself
        return ArmPermission("Microsoft.Resources/subscriptions/providers/read",
                             "/" + "/".join(base + ["providers", namespace]))
    if len(rest) % 2 == 0:  # a resource: checked over itself
        here = "/" + "/".join(base + ["providers", namespace] + rest)
        return ArmPermission("/".join([ns, *types, _VERB.get(method, "action")]), here)
    # A collection or an action: checked over the parent resource (or the scope before `providers`).
    parent = "/" + "/".join(base + (["providers", namespace] + rest[:-1] if len(rest) > 1 else []))
    if method == "POST":  # accounts/{a}/listKeys, .../register
        return ArmPermission("/".join([ns, *types, "action"]), parent)
    return ArmPermission("/".join([ns, *types, _VERB.get(method, "action")]), parent)


def arm_permission(method: str, path: str) -> ArmPermission | None:
    """The action and scope an ARM request needs; None for requests nobody is
    checked for (`GET /subscriptions` — the caller should filter the list to
    what the principal can read — and tenant-level `/providers/...` metadata).

    Examples (the scope is the request's resource, or the parent of a collection
    or an action):
        PUT  .../accounts/{a}/deployments/{d}  Microsoft.CognitiveServices/accounts/deployments/write
        POST .../accounts/{a}/listKeys         Microsoft.CognitiveServices/accounts/listKeys/action
                                               (over .../accounts/{a})
        GET  .../resourceGroups/{g}            Microsoft.Resources/subscriptions/resourceGroups/read
        PUT  {scope}/providers/Microsoft.Authorization/roleAssignments/{id}
                                               Microsoft.Authorization/roleAssignments/write
        POST /subscriptions/{s}/providers/Microsoft.CognitiveServices/register
                                               Microsoft.CognitiveServices/register/action over /subscriptions/{s}
    """
    parts = [p for p in path.split("/") if p]
    if not parts or parts[0].lower() != "subscriptions" or len(parts) == 1:
        return None
    lowered = [p.lower() for p in parts]
    if "providers" in lowered[2:]:
        at = len(lowered) - 1 - lowered[::-1].index("providers")  # the last one: extension resources
        if at + 1 >= len(parts):  # GET /subscriptions/{s}/providers: the provider list
            return ArmPermission("Microsoft.Resources/subscriptions/providers/read", "/" + "/".join(parts[:2]))
        return _provider_action(method, parts[at + 1], parts[at + 2:], parts[:at])
    verb = _VERB.get(method.upper(), "action")
    if len(parts) == 2:  # /subscriptions/{s}
        return ArmPermission(f"Microsoft.Resources/subscriptions/{verb}", path.rstrip("/"))
    if lowered[2] == "resourcegroups":
        if len(parts) == 3:
            return ArmPermission(f"Microsoft.Resources/subscriptions/resourceGroups/{verb}",
                                 "/" + "/".join(parts[:2]))
        return ArmPermission(f"Microsoft.Resources/subscriptions/resourceGroups/{verb}", "/" + "/".join(parts[:4]))
    # Anything else under a subscription: named after its segments (Lapis's choice).
    return ArmPermission("Microsoft.Resources/subscriptions/" + "/".join(_canon(p) for p in parts[2::2]) +
                         f"/{verb}", "/" + "/".join(parts[:2]))
