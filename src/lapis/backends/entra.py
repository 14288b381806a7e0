"""Entra ID client-credentials tokens for an Azure OpenAI upstream.

POST {authority}/{tenant}/oauth2/v2.0/token with grant_type=client_credentials
and scope https://cognitiveservices.azure.com/.default, as azure-identity's
ClientSecretCredential does. The token is cached and reused until shortly
before it expires (5 minutes, or half its lifetime when that is shorter);
concurrent callers wait for one fetch instead of each starting their own.

A token the upstream refuses (401) is dropped with `invalidate()`, so the
next call fetches a new one.

A 4xx from the token endpoint (wrong secret, unknown tenant) is this member's
misconfiguration, not a fault of the caller's request: it is raised as
UpstreamError("unavailable") with Entra's description, so the balancer moves
on to another member instead of handing the caller a 400 (Lapis's choice).
"""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import msgspec

from lapis.backends import http
from lapis.backends.base import UpstreamError

__all__ = ["ClientCredentials", "DEFAULT_AUTHORITY", "SCOPE"]

DEFAULT_AUTHORITY = "https://login.microsoftonline.com"
SCOPE = "https://cognitiveservices.azure.com/.default"
REFRESH_MARGIN_S = 300.0


class _TokenAnswer(msgspec.Struct):
    access_token: str
    expires_in: int | str = 3600


class ClientCredentials:
    def __init__(self, auth: dict[str, Any], secret: str, timeout_s: float) -> None:
        tenant = str(auth.get("tenant") or "")
        if not tenant:
            raise ValueError("Entra client credentials need auth.tenant")
        authority = str(auth.get("authority") or DEFAULT_AUTHORITY).rstrip("/")
        self.url = f"{authority}/{tenant}/oauth2/v2.0/token"
        self.client_id = str(auth["client_id"])
        self._secret = secret
        self._timeout = aiohttp.ClientTimeout(total=timeout_s, sock_connect=min(http.CONNECT_S, timeout_s))
        self._headers = http.request_headers({})  # the form payload sets Content-Type
        self._token = ""
        self._refresh_at = 0.0  # loop time after which the token is fetched again
        self._lock = asyncio.Lock()
        self.fetches = 0  # token requests made, for stats and tests

    async def token(self, session: aiohttp.ClientSession) -> str:
        loop = asyncio.get_running_loop()
        if self._token and loop.time() < self._refresh_at:
            return self._token
        async with self._lock:
            if self._token and loop.time() < self._refresh_at:  # fetched while we waited
                return self._token
            token, lifetime = await self._fetch(session)
            self._token = token
            self._refresh_at = loop.time() + lifetime - min(REFRESH_MARGIN_S, lifetime / 2)
            return token

    def invalidate(self) -> None:
        self._token, self._refresh_at = "", 0.0

    async def _fetch(self, session: aiohttp.ClientSession) -> tuple[str, float]:
        form = {"grant_type": "client_credentials", "client_id": self.client_id, "client_secret": self._secret,
                "scope": SCOPE}
        self.fetches += 1
        try:
            async with session.post(self.url, data=form, headers=self._headers, timeout=self._timeout) as response:
                raw = await response.read()
                status, headers = response.status, response.headers
        except http.TRANSPORT_ERRORS as exc:
            raise http.translate(exc, "the Entra token endpoint") from None
        if status >= 400:
            error = http.status_error(status, headers, raw, "the Entra token endpoint")
            if error.kind == "rejected":
                error = UpstreamError("unavailable", "cannot get an Entra token for the upstream: " + error.message,
                                      status=status, body=raw)
            raise error
        try:
            answer = msgspec.json.decode(raw, type=_TokenAnswer)
            lifetime = float(answer.expires_in)
        except (msgspec.DecodeError, msgspec.ValidationError, ValueError):
            raise UpstreamError("malformed", "the Entra token endpoint's answer is not a token", status=status) \
                from None
        return answer.access_token, max(lifetime, 1.0)
