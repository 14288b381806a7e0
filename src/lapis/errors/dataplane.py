"""Data-plane errors: routing, auth, validation, throttling (wire reference §1-§3)."""

from __future__ import annotations

import json
from typing import Any, Iterable, Mapping

from lapis.errors.base import ApiError, _dump, _gateway, _model, arm


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
