"""Private endpoints on this machine: one extra listener per endpoint, bound to one account.

On Azure a private endpoint is a private IP address in a virtual network that
leads to one resource; DNS sends the resource's name there, and the resource
takes that traffic even with `publicNetworkAccess: Disabled`. Lapis has no
virtual networks, so a private endpoint here is an address and a port of its
own (127.0.0.2 by default: Linux routes all of 127.0.0.0/8 to the loopback
interface) on which this process listens with the same application:

    - a data-plane request that arrives on an endpoint's listener, for the
      account it is bound to, passes the public-network and firewall checks
      (networkAcls); keys, tokens and everything after are checked as usual;
    - a data-plane request on that listener for any other account gets the
      data plane's 404 "Resource not found", as if the account did not exist
      there (Lapis's choice: Azure's answer to traffic for another resource
      through a private endpoint is not captured);
    - the same account on the public listener still gets "Public access is
      disabled. Please configure private endpoint.";
    - Lapis's other surfaces (ARM, the token service, /healthz) answer on the
      listener as on the main one: Lapis has one router.

The data plane asks `admits()` only when some endpoint is open in this process
(`bound` is empty otherwise: the one check on the hot path). It
tells listeners apart by the local address of the request's connection, so a
connection that stays open after its endpoint is deleted no longer counts as
private.

Replicas: every replica opens every stored endpoint's listener, at start-up
(`attach`) and whenever another replica announces a change (NOTIFY on
lapis.network.store.CHANGED_CHANNEL). The sockets set SO_REUSEPORT, so the
replicas of one machine share a port and the kernel spreads connections among
them. A listener that cannot be opened (the port is taken by another program)
is logged and skipped, never fatal.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
from typing import Any

from aiohttp import web

from lapis.errors import catalogue as errors
from lapis.network import shapes
from lapis.network.store import CHANGED_CHANNEL, EndpointStore
from lapis.store.records import Account

log = logging.getLogger("lapis.network")
DEFAULT_ADDRESS = "127.0.0.2"


class ListenerUnavailable(Exception):
    """This process could not listen on the address and port (the OS error says why)."""


def normalize_address(value: str) -> str:
    """The address as sockets report it; ValueError for a name, a wildcard or a multicast address."""
    ip = ipaddress.ip_address(value.strip())
    if ip.is_unspecified or ip.is_multicast:
        raise ValueError(value)
    return str(ip)


def free_port(address: str) -> int:
    """A port the OS says is free on `address` now (what 'port 0' means for an endpoint)."""
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((address, 0))
        except OSError as exc:
            raise ListenerUnavailable(exc.strerror or str(exc)) from None
        return int(sock.getsockname()[1])


class PrivateEndpoints:
    """The stored endpoints (`store`) and the listeners this process opened for them.

    `bound` maps each open listener's (address, port) to the internal id of
    the account it serves; it is empty when there are none (the data plane's
    one check on the hot path)."""

    def __init__(self, store: EndpointStore):
        self.store = store
        self.bound: dict[tuple[str, int], str] = {}
        self._sites: dict[tuple[str, int], web.TCPSite] = {}
        self._runner: web.BaseRunner | None = None
        self._ssl: Any = None
        self._lock = asyncio.Lock()
        self._tasks: set[asyncio.Task] = set()

    # -- the data plane's question ----------------------------------------------

    def admits(self, request: web.Request, account_id: str) -> bool:
        """True when the request came in on the listener of one of this account's
        private endpoints; False on any other listener (the public one). Raises
        the data plane's 404 when it came in on another account's endpoint."""
        transport = request.transport
        local = transport.get_extra_info("sockname") if transport is not None else None
        if not local:
            return False
        owner = self.bound.get((local[0], local[1]))
        if owner is None:
            return False
        if owner != account_id:
            raise errors.resource_not_found()
        return True

    # -- ARM's view -------------------------------------------------------------------

    async def connections(self, accounts: list[Account]) -> dict[str, list[dict[str, Any]]]:
        """Each account's `properties.privateEndpointConnections`, by internal id."""
        by_id = {a.id: a for a in accounts}
        found: dict[str, list[dict[str, Any]]] = {}
        for endpoint in await self.store.for_accounts(list(by_id)):
            found.setdefault(endpoint.account_id, []).append(shapes.connection(endpoint, by_id[endpoint.account_id]))
        return found

    # -- listeners ------------------------------------------------------------------

    async def attach(self, runner: web.BaseRunner, ssl_context: Any = None) -> None:
        """Once the main listener is up (lapis.server): open every stored
        endpoint's listener, with the main listener's TLS, and follow the
        changes other replicas make."""
        self._runner, self._ssl = runner, ssl_context
        await self.store.db.listen(CHANGED_CHANNEL, lambda _payload: self._spawn(self._resync()))
        await self.sync()

    @property
    def attached(self) -> bool:
        """False in a process that serves no sockets of its own (an in-process test app)."""
        return self._runner is not None

    def scheme(self) -> str:
        return "https" if self._ssl is not None else "http"

    def is_open(self, address: str, port: int) -> bool:
        return (address, port) in self._sites

    async def sync(self) -> None:
        """Open a listener for each stored endpoint that has none here, and close
        those whose endpoint is gone or now serves another account."""
        if self._runner is None:
            return
        async with self._lock:
            wanted = {e.listener: e.account_id for e in await self.store.all()}
            for key in list(self._sites):
                if key not in wanted:
                    self.bound.pop(key, None)
                    await self._close(key)
            for key, account_id in wanted.items():
                if key not in self._sites:
                    try:
                        await self._open(key)
                    except OSError as exc:
                        log.warning("private endpoint listener %s:%s not opened: %s", key[0], key[1],
                                    exc.strerror or exc)
                        continue
                self.bound[key] = account_id

    async def _resync(self) -> None:
        try:
            await self.sync()
        except Exception:  # noqa: BLE001 - keep the listeners we have; the next change tries again
            log.exception("private endpoint listeners not brought up to date")

    async def _open(self, key: tuple[str, int]) -> None:
        assert self._runner is not None
        site = web.TCPSite(self._runner, key[0], key[1], ssl_context=self._ssl, backlog=1024,
                           reuse_address=True, reuse_port=True)
        await site.start()
        self._sites[key] = site
        log.info("private endpoint listener open on %s:%s", key[0], key[1])

    async def _close(self, key: tuple[str, int]) -> None:
        site = self._sites.pop(key)
        try:
            await site.stop()
        except RuntimeError:  # the runner already stopped it (shutting down)
            pass
        log.info("private endpoint listener closed on %s:%s", key[0], key[1])

    def _spawn(self, work: Any) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
