"""The catalogue: one factory per Azure error, data plane and ARM.

Bodies are rendered here, once, to the exact bytes Azure sends. Where Azure's
own bytes have a quirk (the space after `"message":` in the gateway's 404,
for instance) the body is written out literally. Sources are the sections of
shared/docs/azure-wire-reference.md named in each docstring; where no capture
exists the choice is marked "Lapis's choice".
"""

from __future__ import annotations

import json
from typing import Any, Iterable, Mapping


class ApiError(Exception):
    """An error answer: status, exact body bytes and extra headers."""

    __slots__ = ("status", "body", "headers", "code")

    def __init__(self, status: int, body: bytes, code: str, headers: Mapping[str, str] | None = None):
        super().__init__(f"{status} {code}")
        self.status = status
        self.body = body
        self.code = code
        self.headers = dict(headers or {})

    def json(self) -> Any:
        return json.loads(self.body)


def _dump(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()


def _gateway(status: int, code: str, message: str, headers: Mapping[str, str] | None = None) -> ApiError:
    """Azure's resource-level family: only code and message (§3.1 family 1)."""
    return ApiError(status, _dump({"error": {"code": code, "message": message}}), code, headers)


def _model(status: int, message: str, type_: str | None, param: str | None, code: str | None) -> ApiError:
    """The OpenAI-style family: message, type, param, code, nulls kept (§3.1 family 2)."""
    body = {"error": {"message": message, "type": type_, "param": param, "code": code}}
    return ApiError(status, _dump(body), code or type_ or str(status))


# --------------------------------------------------------------------------
# Data plane: routing, versions, auth (§1.4, §2.2)
# --------------------------------------------------------------------------

def resource_not_found() -> ApiError:
    """Missing api-version, unknown path or unknown endpoint (§1.4). Literal bytes:
    the captures show a space after "message":."""
    return ApiError(404, b'{"error":{"code":"404","message": "Resource not found"}}', "404")


def api_version_not_supported() -> ApiError:
    """A well-formed api-version Azure does not serve (§1.4)."""
    return _gateway(400, "BadRequest", "API version not supported")


def invalid_key() -> ApiError:
    """Wrong or missing api-key (§2.2). 224 bytes, as captured."""
    return _gateway(
        401,
        "401",
        "Access denied due to invalid subscription key or wrong API endpoint. Make sure to provide a "
        "valid key for an active subscription and use a correct regional API endpoint for your resource.",
    )


def invalid_token() -> ApiError:
    """A bad, expired or wrong-audience bearer token (§2.2): the APIM shape,
    no `error` wrapper, "have expired" as Azure writes it."""
    body = {"statusCode": 401, "message": "Unauthorized. Access token is missing, invalid, audience is incorrect "
            "(https://cognitiveservices.azure.com), or have expired."}
    return ApiError(401, json.dumps(body).encode(), "401")


def firewall_denied() -> ApiError:
    """networkAcls deny the caller's address (§2.2). Literal bytes, space after "message":."""
    return ApiError(
        403, b'{"error":{"code":"403","message": "Access denied due to Virtual Network/Firewall rules."}}', "403")


def key_auth_disabled() -> ApiError:
    """disableLocalAuth is true and a key was used (§2.2)."""
    return _gateway(403, "AuthenticationTypeDisabled", "Key based authentication is disabled for this resource.")


def public_access_disabled() -> ApiError:
    """publicNetworkAccess is Disabled (§2.2). Literal bytes, space after "message":."""
    return ApiError(
        403,
        b'{"error":{"code":"403","message": "Public access is disabled. Please configure private endpoint."}}',
        "403",
    )


# --------------------------------------------------------------------------
# Data plane: deployments and operations (§3.2)
# --------------------------------------------------------------------------

def deployment_not_found() -> ApiError:
    return _gateway(
        404,
        "DeploymentNotFound",
        "The API deployment for this resource does not exist. If you created the deployment within "
        "the last 5 minutes, please wait a moment and try again.",
    )


_OPERATION_WORDS = {"chat": "chatCompletion", "embeddings": "embeddings", "completions": "completion"}


def operation_not_supported(operation: str, model: str) -> ApiError:
    """Chat on an embeddings deployment and the like (§3.2). `operation` is one of
    chat | embeddings | completions; `model` the model name."""
    word = _OPERATION_WORDS[operation]
    return _gateway(
        400,
        "OperationNotSupported",
        f"The {word} operation does not work with the specified model, {model}. Please choose different "
        "model and try again. You can learn more about which models can be used with each operation "
        "here: https://go.microsoft.com/fwlink/?linkid=2197993.",
    )


# --------------------------------------------------------------------------
# Data plane: request validation (§3.2; OpenAI's wording where Azure passes it on)
# --------------------------------------------------------------------------

def unrecognized_arguments(names: Iterable[str]) -> ApiError:
    names = list(names)
    if len(names) == 1:
        message = f"Unrecognized request argument supplied: {names[0]}"
    else:
        message = f"Unrecognized request arguments supplied: {', '.join(names)}"
    return _model(400, message, "invalid_request_error", None, None)


def invalid_json() -> ApiError:
    """Body is not JSON. Azure passes the model service's answer through; this is
    OpenAI's wording for it (Lapis's choice: no Azure capture known)."""
    return _model(
        400,
        "We could not parse the JSON body of your request. (HINT: This likely means you aren't using "
        "your HTTP library correctly. The OpenAI API expects a JSON payload, but what was sent was not "
        "valid JSON. If you have trouble figuring out how to fix this, please contact us through our "
        "help center at help.openai.com.)",
        "invalid_request_error",
        None,
        None,
    )


_TYPE_WORDS = {
    "float": "a decimal",
    "int": "an integer",
    "str": "a string",
    "bool": "a boolean",
    "array": "an array",
    "object": "an object",
    "null": "null",
}


def invalid_type(param: str, expected: str, got: str) -> ApiError:
    """A field of the wrong JSON type, in OpenAI's wording (type names: float,
    int, str, bool, array, object, null)."""
    want = _TYPE_WORDS.get(expected, expected)
    have = _TYPE_WORDS.get(got, got)
    return _model(
        400,
        f"Invalid type for '{param}': expected {want}, but got {have} instead.",
        "invalid_request_error",
        param,
        "invalid_type",
    )


def missing_parameter(param: str) -> ApiError:
    return _model(
        400, f"Missing required parameter: '{param}'.", "invalid_request_error", param, "missing_required_parameter"
    )


def invalid_value(param: str, message: str, code: str | None = "invalid_value") -> ApiError:
    return _model(400, message, "invalid_request_error", param, code)


def context_length_exceeded(window: int, prompt: int, completion: int | None) -> ApiError:
    """§3.2: two wordings, with and without the completion budget counted."""
    if completion is None:
        message = (
            f"This model's maximum context length is {window} tokens. However, your messages resulted in "
            f"{prompt} tokens. Please reduce the length of the messages."
        )
    else:
        message = (
            f"This model's maximum context length is {window} tokens. However, you requested "
            f"{prompt + completion} tokens ({prompt} in the messages, {completion} in the completion). "
            "Please reduce the length of the messages or completion."
        )
    return _model(400, message, "invalid_request_error", "messages", "context_length_exceeded")


def request_too_large(limit: int) -> ApiError:
    """Body over the size cap. Lapis's choice: no Azure capture of a 413 body is
    known, so the gateway family with the status number as code."""
    return _gateway(413, "413", f"The request body is too large. The maximum request size is {limit} bytes.")


def internal_error(request_id: str) -> ApiError:
    """An unexpected failure (§3.2, 2024 wording) with the request id inside."""
    return _model(
        500,
        "The server had an error while processing your request. Sorry about that! You can retry your "
        "request, or contact us through an Azure support request at: "
        "https://go.microsoft.com/fwlink/?linkid=2213926 if the error persists. "
        f"(Please include the request ID {request_id} in your message.)",
        "server_error",
        None,
        None,
    )


# --------------------------------------------------------------------------
# Management plane (ARM) (§6.1, §6.7, §5.5)
# --------------------------------------------------------------------------

def arm(status: int, code: str, message: str, details: list[dict[str, Any]] | None = None,
        headers: Mapping[str, str] | None = None) -> ApiError:
    """ARM's common ErrorResponse envelope."""
    error: dict[str, Any] = {"code": code, "message": message}
    if details is not None:
        error["details"] = details
    return ApiError(status, _dump({"error": error}), code, headers)


def arm_missing_auth() -> ApiError:
    return arm(401, "AuthenticationFailed", "Authentication failed. The 'Authorization' header is missing.",
               headers={"WWW-Authenticate": 'Bearer authorization_uri="", error="invalid_token", '
                        'error_description="The authentication failed because of missing \'Authorization\' header."'})


def arm_invalid_token() -> ApiError:
    return arm(401, "InvalidAuthenticationToken", "The access token is invalid.",
               headers={"WWW-Authenticate": 'Bearer authorization_uri="", error="invalid_token", '
                        'error_description="The access token is invalid."'})


def arm_missing_api_version() -> ApiError:
    return arm(400, "MissingApiVersionParameter",
               "The api-version query parameter (?api-version=) is required for all requests.")


def arm_no_route(method: str, path: str) -> ApiError:
    """No ARM operation at this path. Lapis's choice of wording, after ARM's
    NoRegisteredProviderFound family."""
    return arm(404, "InvalidResourceType",
               f"The resource type could not be found for the request '{method} {path}'.")


def arm_bad_request(message: str, code: str = "InvalidRequestContent") -> ApiError:
    return arm(400, code, message)


def missing_subscription_registration(namespace: str) -> ApiError:
    message = (f"The subscription is not registered to use namespace '{namespace}'. "
               "See https://aka.ms/rps-not-found for how to register subscriptions.")
    return arm(409, "MissingSubscriptionRegistration", message,
               details=[{"code": "MissingSubscriptionRegistration", "target": namespace, "message": message}])


def subscription_not_found(subscription: str) -> ApiError:
    return arm(404, "SubscriptionNotFound", f"The subscription '{subscription}' could not be found.")


def resource_group_not_found(group: str) -> ApiError:
    return arm(404, "ResourceGroupNotFound", f"Resource group '{group}' could not be found.")


def resource_not_found_arm(resource_type: str, name: str, group: str) -> ApiError:
    return arm(404, "ResourceNotFound",
               f"The Resource '{resource_type}/{name}' under resource group '{group}' was not found. "
               "For more details please go to https://aka.ms/ARMResourceNotFoundFix")


def special_feature_required(sku: str, kind: str) -> ApiError:
    """The subscription is not approved for this kind (§5.5)."""
    return arm(400, "SpecialFeatureOrQuotaIdRequired",
               f"The subscription does not have QuotaId/Feature required by SKU '{sku}' from kind '{kind}' "
               "or contains blocked QuotaId/Feature.")


def custom_domain_in_use(domain: str) -> ApiError:
    """409 as captured; the link sits in literal double quotes, no final period."""
    return arm(409, "CustomDomainInUse",
               f"Please pick a different name. The subdomain name '{domain}' is not available as it's already "
               "used by a resource. If the resource using the name was deleted in the last 48 hours, you may "
               'need to purge the deleted resource. Learn more at "https://go.microsoft.com/fwlink/?linkid=2215493"')


def invalid_account_name() -> ApiError:
    return arm(400, "InvalidAccountName",
               "The account name is invalid. Account name can only include alphanumeric characters, underscores "
               "and hyphens; Account name only allows 2 to 64 characters.")


def invalid_deployment_name() -> ApiError:
    return arm(400, "InvalidResourceName",
               "The resource name is invalid. Resource name can only include alphanumeric characters, "
               "underscores and hyphens; Resource name only allows 2 to 64 characters.")


def invalid_key_name(given: str) -> ApiError:
    return arm(400, "BadRequest", f"The key name '{given}' is invalid. Valid values are 'Key1' and 'Key2'.")


def arm_resource_missing(resource_id: str) -> ApiError:
    """A child resource (deployment) that does not exist: code NotFound."""
    return arm(404, "NotFound", f"Specified resource '{resource_id}' cannot be found.")


def sku_not_in_region(model: str, version: str, sku: str, location: str) -> ApiError:
    """The model offers this SKU elsewhere, not in this region."""
    return arm(400, "InvalidResourceProperties",
               f"The specified SKU '{sku}' for model '{model} {version}' is not supported in this region "
               f"'{location}'.")


def sku_not_for_model(model: str, version: str, sku: str) -> ApiError:
    """The model does not offer this SKU anywhere."""
    return arm(400, "InvalidResourceProperties",
               f"The specified SKU '{sku}' of account deployment is not supported by the model '{model}' "
               f"version: '{version}'.")


def unknown_model(fmt: str, model: str, version: str | None) -> ApiError:
    return arm(400, "DeploymentModelNotSupported",
               f"The model 'Format:{fmt},Name:{model},Version:{version or ''}' of account deployment is not "
               "supported.")


# --------------------------------------------------------------------------
# Management plane: quota (§5.3, §5.5)
# --------------------------------------------------------------------------

def insufficient_quota(required: int, quota: str, available: int, usage: int, limit: int) -> ApiError:
    """Creating or scaling a deployment past the subscription's quota (§5.5, the
    2024+ form, "require" as Azure writes it). `quota` is the usage's localized
    name, e.g. "Tokens Per Minute (thousands) - GPT-4o"."""
    return arm(400, "InsufficientQuota",
               f"This operation require {required} new capacity in quota {quota}, which is bigger than the current "
               f"available capacity {available}. The current quota usage is {usage} and the quota limit is {limit} "
               f"for quota {quota}.")


def invalid_quota_request(message: str) -> ApiError:
    """A quota increase request Lapis will not file: a limit not above the current
    one, a model or SKU not offered in the location, a malformed body. Lapis's
    choice: Azure files these through the portal / Microsoft.Quota, whose bodies
    are not captured; 400 with the code InvalidQuotaRequest."""
    return arm(400, "InvalidQuotaRequest", message)


def quota_request_not_pending(request_id: str, state: str) -> ApiError:
    """Approving or rejecting a request already decided. Lapis's choice: 409."""
    return arm(409, "QuotaRequestNotPending",
               f"The quota request '{request_id}' is already {state}; only a Pending request can be decided.")


# --------------------------------------------------------------------------
# Data plane: value checks in OpenAI's validator wording (research notes in
# docs/wire-decisions.md)
# --------------------------------------------------------------------------

def empty_array(param: str) -> ApiError:
    return invalid_value(
        param, f"Invalid '{param}': empty array. Expected an array with minimum length 1, but got an empty "
        "array instead.", "empty_array")


def integer_out_of_range(param: str, value: int, low: int | None, high: int | None) -> ApiError:
    if high is not None and value > high:
        return invalid_value(param, f"Invalid '{param}': integer above maximum value. Expected a value <= {high}, "
                             f"but got {value} instead.", "integer_above_max_value")
    return invalid_value(param, f"Invalid '{param}': integer below minimum value. Expected a value >= {low}, "
                         f"but got {value} instead.", "integer_below_min_value")


def decimal_out_of_range(param: str, value: float, low: float, high: float) -> ApiError:
    if value > high:
        return invalid_value(param, f"Invalid '{param}': decimal above maximum value. Expected a value <= {high:g}, "
                             f"but got {value:g} instead.", "decimal_above_max_value")
    return invalid_value(param, f"Invalid '{param}': decimal below minimum value. Expected a value >= {low:g}, "
                         f"but got {value:g} instead.", "decimal_below_min_value")


def max_tokens_too_large(param: str, given: int, limit: int) -> ApiError:
    return invalid_value(param, f"max_tokens is too large: {given}. This model supports at most {limit} completion "
                         f"tokens, whereas you provided {given}.", "invalid_value")


def dimensions_not_supported() -> ApiError:
    return _model(400, "This model does not support specifying dimensions.", "invalid_request_error", None, None)


def too_many_inputs(limit: int) -> ApiError:
    """The 2023 template (two spaces after the number's period), with today's limit."""
    return _model(
        400,
        f"Too many inputs. The max number of inputs is {limit}.  We hope to increase the number of inputs per "
        "request soon. Please contact us through an Azure support request at: "
        "https://go.microsoft.com/fwlink/?linkid=2213926 for further questions.",
        "invalid_request_error", None, None)


def embedding_input_too_long(window: int, requested: int) -> ApiError:
    return _model(
        400,
        f"This model's maximum context length is {window} tokens, however you requested {requested} tokens "
        f"({requested} in your prompt; 0 for the completion). Please reduce your prompt; or completion length.",
        "invalid_request_error", None, None)


# --------------------------------------------------------------------------
# Data plane: throttling (§3.3)
# --------------------------------------------------------------------------

def rate_limited(deployment: str, model: str, region: str, kind: str, operation: str, api_version: str,
                 retry_after_s: int, by_tokens: bool, headers: Mapping[str, str]) -> ApiError:
    """429 with the late-2025 template (§3.3 variant 5): deployment, model,
    region, pricing tier, operation id and api-version filled in. "token rate
    limit" for TPM, "call rate limit" for the request window."""
    what = "token rate limit" if by_tokens else "call rate limit"
    message = (
        f"Your requests to {deployment} for {model} in {region} have exceeded the {what} for your current "
        f"{kind} S0 pricing tier. This request was for {operation} under Azure OpenAI API version {api_version}. "
        f"Please retry after {retry_after_s} seconds. To increase your default rate limit, visit: "
        "https://aka.ms/oai/quotaincrease."
    )
    return _gateway(429, "429", message, headers)


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
