"""RBAC errors on both planes (wire reference §2.2, §2.3, §7)."""

from __future__ import annotations

import json
from typing import Any, Iterable, Mapping

from lapis.errors.base import ApiError, _dump, _gateway, _model, arm


# --------------------------------------------------------------------------
# RBAC: data-plane PermissionDenied, ARM AuthorizationFailed, role
# assignments and definitions (§2.2, §2.3, §7.2)
# --------------------------------------------------------------------------

def permission_denied(principal_oid: str, data_action: str, method: str, route_template: str) -> ApiError:
    """A valid token whose principal lacks the data action: 401 (not 403), naming
    the route TEMPLATE (`{deployment-id}`), words in backticks, as captured (§2.2)."""
    return _gateway(401, "PermissionDenied",
                    f"The principal `{principal_oid}` lacks the required data action `{data_action}` to perform "
                    f"`{method} {route_template}` operation.")


def authorization_failed(client: str, oid: str, action: str, scope: str) -> ApiError:
    """ARM's 403 for a caller without the action at the scope (§2.3)."""
    return arm(403, "AuthorizationFailed",
               f"The client '{client}' with object id '{oid}' does not have authorization to perform action "
               f"'{action}' over scope '{scope}' or the scope is invalid. If access was recently granted, please "
               "refresh your credentials.")


def role_assignment_exists() -> ApiError:
    """Same principal, role and scope as an existing assignment (§7.2; wording as
    seen in deployment logs: "(RoleAssignmentExists) The role assignment already exists.")."""
    return arm(409, "RoleAssignmentExists", "The role assignment already exists.")


def role_assignment_update_not_permitted() -> ApiError:
    """A re-PUT of an existing assignment name with other properties (ARM's wording)."""
    return arm(400, "RoleAssignmentUpdateNotPermitted",
               "Tenant ID, application ID, principal ID, and scope are not allowed to be updated.")


def role_assignment_not_found(name: str) -> ApiError:
    return arm(404, "RoleAssignmentNotFound", f"The role assignment '{name}' is not found.")


def role_definition_not_found(role_definition_id: str, status: int = 404) -> ApiError:
    """Unknown role: 404 on GET roleDefinitions/{id}, 400 when a PUT assignment names it."""
    return arm(status, "RoleDefinitionDoesNotExist",
               f"The specified role definition with ID '{role_definition_id}' does not exist.")


def invalid_role_assignment_id(name: str) -> ApiError:
    return arm(400, "InvalidRoleAssignmentId",
               f"The role assignment ID '{name}' is not valid. The role assignment ID must be a GUID.")


def invalid_principal_id() -> ApiError:
    return arm(400, "InvalidPrincipalId", "A valid principal ID must be provided for role assignment.")


def invalid_role_assignment_scope(scope: str) -> ApiError:
    """A scope Lapis has no resource for. Lapis's choice of wording."""
    return arm(400, "InvalidScope", f"The scope '{scope}' is not valid for a role assignment: use a subscription, "
               "a resource group or a resource id.")


def unsupported_filter(value: str) -> ApiError:
    """A $filter beyond principalId eq, atScope(), assignedTo() and roleName eq. Lapis's choice of wording."""
    return arm(400, "UnsupportedQuery", f"The filter '{value}' is not supported.")
