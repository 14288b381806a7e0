"""The data plane's in-memory view of accounts, keys and deployments.

The hot path never queries the database: it reads this directory, which the
management plane refreshes after every write it commits (so a regenerated key
stops working with the next request). The store stays the source of truth;
the directory is rebuilt from it at start-up.

Lookups:
    by_subdomain   custom subdomain (lower-case) -> account, for
                   http://HOST/accounts/{subdomain}/openai/... and for the Host
                   header {subdomain}.openai.azure.com
    by_key         api key -> account, for regional endpoints without a
                   subdomain (http://HOST/regions/{location}/openai/...), where
                   Azure too finds the resource by its key
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass, field

from lapis.catalog import Catalogue, ModelSpec, VersionSpec
from lapis.dataplane.network import allowed_networks
from lapis.ratelimit.base import Limits
from lapis.ratelimit.policy import limits_for
from lapis.store.records import Account, Deployment


@dataclass(frozen=True, slots=True)
class DeploymentEntry:
    name: str
    model: ModelSpec
    version: VersionSpec
    sku: str
    capacity: int
    limits: Limits  # what the gate enforces (lapis.ratelimit.policy), worked out once
    spillover: str | None = None  # properties.spilloverDeploymentName: where its 429s overflow

    @property
    def model_id(self) -> str:
        """The `model` field of responses: name and version, e.g. gpt-4o-mini-2024-07-18."""
        return f"{self.model.name}-{self.version.version}"


@dataclass(frozen=True, slots=True)
class AccountEntry:
    id: str
    name: str
    arm_id: str  # /subscriptions/…/accounts/{name}: the scope role assignments are checked at
    subdomain: str | None
    location: str
    region: str  # display name for x-ms-region, e.g. "East US"
    kind: str
    keys: tuple[bytes, bytes]
    public_network_access: bool
    disable_local_auth: bool
    allowed_networks: tuple | None = None  # None: any address; else networkAcls' ipRules (defaultAction Deny)
    deployments: dict[str, DeploymentEntry] = field(default_factory=dict)
    subscription_id: str = ""
    resource_group: str = ""
    tags: dict[str, str] = field(default_factory=dict)
    encryption_blocked: bool = False  # its customer-managed key is disabled: every request is refused (keys empty)

    def key_matches(self, presented: str) -> bool:
        """Compare against both keys in constant time (both are always compared)."""
        return self.which_key(presented) is not None

    def which_key(self, presented: str) -> str | None:
        """"key1", "key2" or None; both keys are always compared, in constant time."""
        given = presented.encode("utf-8", "surrogateescape")  # header bytes that were not UTF-8 match nothing
        first = hmac.compare_digest(given, self.keys[0])
        second = hmac.compare_digest(given, self.keys[1])
        return "key1" if first else "key2" if second else None

    def deployment(self, name: str) -> DeploymentEntry | None:
        return self.deployments.get(name.lower())


def build_entry(account: Account, deployments: list[Deployment], catalogue: Catalogue) -> AccountEntry:
    props = account.properties
    entries: dict[str, DeploymentEntry] = {}
    for dep in deployments:
        model = catalogue.model(dep.model_name)
        version = model.version(dep.model_version) if model else None
        if model is None or version is None:
            continue  # the catalogue no longer knows it: the deployment cannot serve
        entries[dep.name.lower()] = DeploymentEntry(dep.name, model, version, dep.sku_name, dep.capacity,
                                                    limits_for(model, dep.sku_name, dep.capacity),
                                                    dep.doc.get("spilloverDeploymentName"))
    return AccountEntry(
        id=account.id,
        name=account.name,
        arm_id=(f"/subscriptions/{account.subscription_id}/resourceGroups/{account.group}"
                f"/providers/Microsoft.CognitiveServices/accounts/{account.name}"),
        subdomain=account.subdomain.lower() if account.subdomain else None,
        location=account.location,
        region=catalogue.region_display(account.location) or account.location,
        kind=account.kind,
        keys=(account.key1.encode(), account.key2.encode()),
        public_network_access=str(props.get("publicNetworkAccess") or "Enabled").lower() != "disabled",
        disable_local_auth=bool(props.get("disableLocalAuth")),
        allowed_networks=allowed_networks(props.get("networkAcls")),
        deployments=entries,
        subscription_id=account.subscription_id,
        resource_group=account.group,
        tags=dict(account.doc.get("tags") or {}),
        encryption_blocked=bool(account.locked),
    )


class Directory:
    def __init__(self) -> None:
        self.version = 0  # bumped on every change: views built from entries (serving routes) rebuild
        self.by_id: dict[str, AccountEntry] = {}
        self.by_subdomain: dict[str, AccountEntry] = {}
        self.by_key: dict[str, AccountEntry] = {}

    def by_arm_id(self, arm_id: str) -> AccountEntry | None:
        """The account whose ARM id is `arm_id` (case-insensitive); a scan, for views built off the hot path."""
        wanted = arm_id.lower()
        return next((e for e in self.by_id.values() if e.arm_id.lower() == wanted), None)

    def put(self, entry: AccountEntry) -> None:
        self.remove(entry.id)
        self.version += 1
        self.by_id[entry.id] = entry
        if entry.subdomain:
            self.by_subdomain[entry.subdomain] = entry
        for key in entry.keys:
            self.by_key[key.decode()] = entry

    def remove(self, account_id: str) -> None:
        old = self.by_id.pop(account_id, None)
        if old is None:
            return
        self.version += 1
        if old.subdomain and self.by_subdomain.get(old.subdomain) is old:
            del self.by_subdomain[old.subdomain]
        for key in old.keys:
            if self.by_key.get(key.decode()) is old:
                del self.by_key[key.decode()]

    def for_key(self, key: str) -> AccountEntry | None:
        """Find the account a key belongs to (regional endpoints). The dict
        lookup is not constant-time; the matched entry is then checked with
        key_matches, which is."""
        entry = self.by_key.get(key)
        return entry if entry is not None and entry.key_matches(key) else None
