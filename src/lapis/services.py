"""The services container: everything a request handler may use, built once.

`create_app()` builds one `Services` at start-up and hands it to each surface;
there is no module-level mutable state anywhere else.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from lapis.backends.base import Backend
from lapis.catalog import Catalogue
from lapis.dataplane.admission import Gate
from lapis.dataplane.directory import Directory, build_entry
from lapis.observe.record import Observers
from lapis.settings import Settings
from lapis.store.sql import SqlStore

# The well-known local identity, like Azurite's devstoreaccount1: samples and
# tests can name it without looking it up. The hex inside spells "lapis".
DEFAULT_TENANT = "2c6d6e8a-6c61-7069-7300-000000000000"
DEFAULT_SUBSCRIPTION = "2c6d6e8a-6c61-7069-7300-000000000001"
DEFAULT_SUBSCRIPTION_NAME = "Lapis local subscription"
ADMIN_PRINCIPAL = "admin@lapis.local"
DIRECTORY_CHANNEL = "lapis_directory"  # PostgreSQL channel: "this account changed"
SERVING_CHANNEL = "lapis_serving"  # PostgreSQL channel: "backends, pools or faults changed"


@dataclass(slots=True)
class Services:
    settings: Settings
    store: SqlStore
    catalogue: Catalogue
    directory: Directory
    backend: Backend
    admin_token: str
    gate: Gate
    identity: Any = None  # lapis.identity.Identity, set at start-up (token service, signing keys)
    authorizer: Any = None  # lapis.auth.rbac.Authorizer: role assignments, for token callers
    locks: dict = field(default_factory=dict)  # asyncio locks by purpose and scope (e.g. quota writes)
    observers: Observers = field(default_factory=Observers)  # hear of every finished data-plane request
    serving: Any = None  # lapis.serving.plans.Serving: which engines answer each deployment
    audit: Any = None  # lapis.audit.recorder.AuditRecorder: management writes and denials (Activity Log)
    diagnostics: Any = None  # lapis.diagnostics.dispatcher.Diagnostics: diagnostic settings and their sinks
    private_endpoints: Any = None  # lapis.network.private_endpoints.PrivateEndpoints: extra listeners, one account each
    budgets: Any = None  # lapis.budgets.Budgets: budgets, their notifications and hard caps (check() on the data plane)
    _tasks: set = field(default_factory=set)

    async def refresh_account(self, account_id: str) -> None:
        """After a committed change: reload the account here, and tell the
        other replicas (PostgreSQL NOTIFY) to do the same before their next
        request."""
        await self.reload_account(account_id)
        await self.store.db.notify(DIRECTORY_CHANNEL, account_id)

    async def refresh_serving(self) -> None:
        """After a committed change to backends, pools or faults: rebuild the
        serving view here and tell the other replicas to do the same."""
        if self.serving is not None:
            await self.serving.reload()
        await self.store.db.notify(SERVING_CHANNEL, "changed")

    async def reload_account(self, account_id: str) -> None:
        """Re-read one account and its deployments into the data-plane directory."""
        account = await self.store.account_by_id(account_id)
        if account is None:
            self.directory.remove(account_id)
            return
        deployments = await self.store.deployments(account_id)
        self.directory.put(build_entry(account, deployments, self.catalogue))

    async def load_directory(self) -> None:
        """Rebuild the whole directory from the store (start-up, and the
        periodic safety net behind notifications)."""
        by_account: dict[str, list] = {}
        for dep in await self.store.deployments():
            by_account.setdefault(dep.account_id, []).append(dep)
        accounts = await self.store.accounts()
        for account in accounts:
            self.directory.put(build_entry(account, by_account.get(account.id, []), self.catalogue))
        for gone in set(self.directory.by_id) - {a.id for a in accounts}:
            self.directory.remove(gone)

    def spawn(self, work: Any) -> None:
        """Run a coroutine in the background, keeping a reference until it ends."""
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def follow_other_replicas(self) -> None:
        """Apply the changes other replicas commit: each account they touch is
        reloaded as soon as its notification arrives."""
        def changed(account_id: str) -> None:
            self.spawn(self.reload_account(account_id))

        await self.store.db.listen(DIRECTORY_CHANNEL, changed)
