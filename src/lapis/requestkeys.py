"""What a request carries between the envelope middleware and the handlers.

The envelope (lapis.app) puts one `RequestState` on every request before any
handler runs; `state_of(request)` finds it. Handlers fill in what they learn
(the account, the deployment, who called, the usage ...), the envelope and
the observers read it when the request ends (lapis.observe.capture).

One object with slots instead of one request key per fact: a request of the
hot path touched the request mapping some thirty times (each a Python-level
Mapping.get, and a miss raises and catches KeyError); attribute access on
one object is several times cheaper.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aiohttp import web

if TYPE_CHECKING:
    from lapis.dataplane.admission import Admission
    from lapis.dataplane.directory import AccountEntry, DeploymentEntry

__all__ = ["RequestState", "STATE", "state_of"]


class RequestState:
    __slots__ = ("request_id", "started", "first_byte", "account", "deployment", "caller", "usage",
                 "served", "error_code", "spilled_from", "content", "admission", "stamped")

    def __init__(self, request_id: str = "") -> None:
        self.request_id = request_id
        self.started: float | None = None  # loop time the request arrived (set when someone observes it)
        self.first_byte: float | None = None  # loop time the status line went out (lapis.tracing.stamp)
        self.account: AccountEntry | None = None  # once the account is known
        self.deployment: DeploymentEntry | None = None  # once the deployment is known
        self.caller = ""  # key1 | key2 | principal object id
        self.usage: tuple[int, int, int] | None = None  # (prompt, completion, cached) tokens, when the model ran
        self.served: tuple[str, str] | None = None  # (member name, location) of the engine that answered
        self.error_code = ""  # Azure error code of the answer, when it was an error
        self.spilled_from = ""  # the deployment whose 429 sent this one to its spillover
        self.content: dict[str, Any] | None = None  # prompt and response text, only when a diagnostic setting asks
        self.admission: Admission | None = None  # the quota admission to settle and report in headers
        self.stamped = False  # the answer's headers already hold the tracing headers (lapis.tracing)

    @property
    def region(self) -> str:
        """The account's region display name, for x-ms-region ("" before the account is known)."""
        return self.account.region if self.account is not None else ""


STATE = web.RequestKey("lapis_state", RequestState)


def state_of(request: web.Request) -> RequestState:
    """The request's state; a blank one (kept) for a request the envelope did not see (tests)."""
    try:
        return request[STATE]
    except KeyError:
        state = request[STATE] = RequestState()
        return state
