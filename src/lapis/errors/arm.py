"""Management-plane (ARM) errors, quota included (wire reference §5-§6)."""

from __future__ import annotations

import json
from typing import Any, Iterable, Mapping

from lapis.errors.base import ApiError, _dump, _gateway, _model, arm


# --------------------------------------------------------------------------
# Management plane (ARM) (§6.1, §6.7, §5.5)
# --------------------------------------------------------------------------

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
