"""The services container: everything a request handler may use, built once.

`create_app()` builds one `Services` at start-up and hands it to each surface;
there is no module-level mutable state anywhere else.
"""

from __future__ import annotations

from dataclasses import dataclass

from lapis.backends.base import Backend
from lapis.catalog import Catalogue
from lapis.dataplane.admission import Gate
from lapis.dataplane.directory import Directory, build_entry
from lapis.settings import Settings
from lapis.store.sql import SqlStore

# The well-known local identity, like Azurite's devstoreaccount1: samples and
# tests can name it without looking it up. The hex inside spells "lapis".
DEFAULT_TENANT = "2c6d6e8a-6c61-7069-7300-000000000000"
DEFAULT_SUBSCRIPTION = "2c6d6e8a-6c61-7069-7300-000000000001"
DEFAULT_SUBSCRIPTION_NAME = "Lapis local subscription"
ADMIN_PRINCIPAL = "admin@lapis.local"


@dataclass(slots=True)
class Services:
    settings: Settings
    store: SqlStore
    catalogue: Catalogue
    directory: Directory
    backend: Backend
    admin_token: str
    gate: Gate

    async def refresh_account(self, account_id: str) -> None:
        """Re-read one account and its deployments into the data-plane directory."""
        account = await self.store.account_by_id(account_id)
        if account is None:
            self.directory.remove(account_id)
            return
        deployments = await self.store.deployments(account_id)
        self.directory.put(build_entry(account, deployments, self.catalogue))

    async def load_directory(self) -> None:
        by_account: dict[str, list] = {}
        for dep in await self.store.deployments():
            by_account.setdefault(dep.account_id, []).append(dep)
        for account in await self.store.accounts():
            self.directory.put(build_entry(account, by_account.get(account.id, []), self.catalogue))
