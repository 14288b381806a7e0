"""Token-service errors, as Entra ID sends them (real-clients.md §4)."""

from __future__ import annotations

import json
from typing import Any, Iterable, Mapping

from lapis.errors.base import ApiError, _dump, _gateway, _model, arm


# --------------------------------------------------------------------------
# Token service: OAuth2 errors as Entra ID sends them (real-clients.md §4),
# and the managed-identity endpoints' errors (§8.1, §8.2)
# --------------------------------------------------------------------------

def _oauth(status: int, error: str, code: int, text: str, trace_id: str = "", correlation_id: str = "") -> ApiError:
    """Entra's OAuth2 error body: the AADSTS code leads the description, which ends
    with the trace id, correlation id and timestamp, as login.microsoftonline.com writes it."""
    import uuid  # local imports keep this section self-contained
    from datetime import datetime, timezone

    trace_id = trace_id or str(uuid.uuid4())
    correlation_id = correlation_id or str(uuid.uuid4())
    stamp = datetime.now(timezone.utc)
    description = (f"AADSTS{code}: {text}\r\nTrace ID: {trace_id}\r\nCorrelation ID: {correlation_id}\r\n"
                   f"Timestamp: {stamp.strftime('%Y-%m-%d %H:%M:%SZ')}")
    body = {"error": error, "error_description": description, "error_codes": [code],
            "timestamp": stamp.strftime("%Y-%m-%d %H:%M:%SZ"), "trace_id": trace_id,
            "correlation_id": correlation_id, "error_uri": f"https://login.microsoftonline.com/error?code={code}"}
    return ApiError(status, _dump(body), error, {"Cache-Control": "no-store, no-cache", "Pragma": "no-cache"})


def oauth_invalid_client(app_id: str, trace_id: str = "", correlation_id: str = "") -> ApiError:
    """Wrong client secret: 401 invalid_client AADSTS7000215."""
    return _oauth(401, "invalid_client", 7000215,
                  "Invalid client secret provided. Ensure the secret being sent in the request is the client secret "
                  f"value, not the client secret ID, for a secret added to app '{app_id}'.", trace_id, correlation_id)


def oauth_missing_client_secret(trace_id: str = "", correlation_id: str = "") -> ApiError:
    """No client_secret (nor client_assertion): 401 invalid_client AADSTS7000218."""
    return _oauth(401, "invalid_client", 7000218, "The request body must contain the following parameter: "
                  "'client_assertion' or 'client_secret'.", trace_id, correlation_id)


def oauth_unknown_client(app_id: str, tenant: str, trace_id: str = "", correlation_id: str = "") -> ApiError:
    """An app id the directory does not hold: 400 unauthorized_client AADSTS700016."""
    return _oauth(400, "unauthorized_client", 700016,
                  f"Application with identifier '{app_id}' was not found in the directory '{tenant}'. This can "
                  "happen if the application has not been installed by the administrator of the tenant or consented "
                  "to by any user in the tenant. You may have sent your authentication request to the wrong tenant.",
                  trace_id, correlation_id)


def oauth_missing_parameter(name: str, trace_id: str = "", correlation_id: str = "") -> ApiError:
    """A required form field is absent: 400 invalid_request AADSTS900144."""
    return _oauth(400, "invalid_request", 900144,
                  f"The request body must contain the following parameter: '{name}'.", trace_id, correlation_id)


def oauth_invalid_scope(scope: str, trace_id: str = "", correlation_id: str = "") -> ApiError:
    """A client-credentials scope without `/.default`: 400 invalid_scope AADSTS1002012."""
    return _oauth(400, "invalid_scope", 1002012,
                  f"The provided value for scope {scope} is not valid. Client credential flows must have a scope "
                  "value with /.default suffixed to the resource identifier (application ID URI).",
                  trace_id, correlation_id)


def oauth_invalid_resource(resource: str, tenant: str, trace_id: str = "", correlation_id: str = "") -> ApiError:
    """A resource the tenant does not know: 400 invalid_resource AADSTS500011."""
    return _oauth(400, "invalid_resource", 500011,
                  f"The resource principal named {resource} was not found in the tenant named {tenant}. This can "
                  "happen if the application has not been installed by the administrator of the tenant or consented "
                  "to by any user in the tenant. You might have sent your authentication request to the wrong "
                  "tenant.", trace_id, correlation_id)


def oauth_unsupported_grant_type(grant_type: str, trace_id: str = "", correlation_id: str = "") -> ApiError:
    """Anything but client_credentials: 400 unsupported_grant_type AADSTS70003."""
    return _oauth(400, "unsupported_grant_type", 70003,
                  f"The app requested an unsupported grant type '{grant_type}'.", trace_id, correlation_id)


def oauth_tenant_not_found(tenant: str, trace_id: str = "", correlation_id: str = "") -> ApiError:
    """A tenant in the path the directory does not hold: 400 invalid_request AADSTS90002."""
    return _oauth(400, "invalid_request", 90002,
                  f"Tenant '{tenant}' not found. Check to make sure you have the correct tenant ID and are signing "
                  "into the correct cloud. Check with your subscription administrator, this may happen if there are "
                  "no active subscriptions for the tenant.", trace_id, correlation_id)


def _mi_error(status: int, error: str, description: str) -> ApiError:
    return ApiError(status, _dump({"error": error, "error_description": description}), error)


def mi_identity_not_found() -> ApiError:
    """client_id, object_id or mi_res_id names no managed identity (IMDS §8.1: 400 invalid_request)."""
    return _mi_error(400, "invalid_request", "Identity not found")


def mi_metadata_header_missing() -> ApiError:
    """IMDS without `Metadata: true` (§8.1)."""
    return _mi_error(400, "bad_request_102", "Required metadata header not specified")


def mi_identity_header_invalid() -> ApiError:
    """App Service style without the right X-IDENTITY-HEADER. Lapis's choice: 401, IMDS's error shape."""
    return _mi_error(401, "unauthorized_client", "The X-IDENTITY-HEADER header is missing or does not match "
                     "IDENTITY_HEADER.")


def mi_missing_parameter(name: str) -> ApiError:
    """No `resource` or `api-version` query parameter (§8.1 invalid_request)."""
    return _mi_error(400, "invalid_request", f"Required query variable '{name}' is missing")


def mi_invalid_resource(resource: str, tenant: str) -> ApiError:
    """A resource Lapis issues no tokens for (§8.1 invalid_resource, AADSTS500011)."""
    return _mi_error(400, "invalid_resource", f"AADSTS500011: The resource principal named {resource} was not found "
                     f"in the tenant named {tenant}.")
