"""Stored records: plain dataclasses, no I/O, no wire shapes.

The ARM JSON for each record is built in lapis.management.shapes; these are
what the store keeps.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(slots=True)
class Subscription:
    id: str
    display_name: str
    tenant_id: str
    state: str = "Enabled"
    openai_approved: bool = False
    created_at: str = ""


@dataclass(slots=True)
class ResourceGroup:
    subscription_id: str
    name: str
    location: str
    tags: dict[str, str] = field(default_factory=dict)
    created_at: str = ""


@dataclass(slots=True)
class Account:
    """An Azure OpenAI (Cognitive Services) account.

    `doc` keeps what the user wrote and ARM echoes back: tags, identity and
    the writable properties (customSubDomainName, publicNetworkAccess,
    networkAcls, disableLocalAuth, encryption, ...)."""

    id: str  # internalId: 32 hex characters
    subscription_id: str
    group: str  # the resource group's name as created
    name: str
    kind: str
    sku_name: str
    location: str
    key1: str
    key2: str
    etag: str
    doc: dict[str, Any] = field(default_factory=dict)
    created_at: str = ""
    updated_at: str = ""
    # Why the keys cannot be opened now: the customer-managed key wrapping the
    # account's data key is disabled ("vault/key/version"). key1 and key2 are
    # empty then, and the store refuses to save the account (lapis.store.sql.Locked).
    locked: str = ""

    @property
    def properties(self) -> dict[str, Any]:
        return self.doc.setdefault("properties", {})

    @property
    def subdomain(self) -> str | None:
        value = self.properties.get("customSubDomainName")
        return value or None


@dataclass(slots=True)
class Deployment:
    account_id: str
    name: str
    model_format: str
    model_name: str
    model_version: str
    sku_name: str
    capacity: int
    etag: str
    doc: dict[str, Any] = field(default_factory=dict)  # raiPolicyName, versionUpgradeOption, ...
    created_at: str = ""
    updated_at: str = ""
