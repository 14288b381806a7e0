"""An in-process Lapis (real sockets, the test's loop) for the diagnostics and audit suites.

In-process so a test can read the sinks' counters and the server's log lines;
everything else goes over HTTP like any client.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestClient, TestServer

from lapis import demo, settings
from lapis.app import build_services, create_app
from lapis.services import DEFAULT_SUBSCRIPTION, Services

SUB = DEFAULT_SUBSCRIPTION
DEMO_ACCOUNT = f"/subscriptions/{SUB}/resourceGroups/lapis-demo/providers/Microsoft.CognitiveServices/accounts/lapis-demo"
SETTINGS_API = "2021-05-01-preview"
CHAT = "/accounts/{subdomain}/openai/deployments/{deployment}/chat/completions"


@dataclass
class Lapis:
    client: TestClient
    services: Services
    home: Path

    async def arm(self, method: str, path: str, body: Any = None, api_version: str = "2025-06-01",
                  token: str | None = None, params: dict[str, str] | None = None) -> tuple[int, Any]:
        query = {"api-version": api_version, **(params or {})}
        headers = {"Authorization": f"Bearer {token or self.services.admin_token}"}
        async with self.client.request(method, path, params=query, json=body, headers=headers) as resp:
            text = await resp.text()
            return resp.status, (await resp.json(content_type=None)) if text.strip() else None

    async def put_setting(self, account_id: str, name: str, properties: dict[str, Any]) -> tuple[int, Any]:
        return await self.arm("PUT", f"{account_id}/providers/Microsoft.Insights/diagnosticSettings/{name}",
                              {"properties": properties}, SETTINGS_API)

    async def key(self, account_id: str) -> str:
        return (await self.arm("POST", f"{account_id}/listKeys"))[1]["key1"]

    async def chat(self, key: str, subdomain: str = "lapis-demo", deployment: str = "gpt-4o-mini") -> tuple[int, str]:
        """One chat call; (status, the request id Azure calls the correlation id)."""
        async with self.client.post(CHAT.format(subdomain=subdomain, deployment=deployment),
                                    params={"api-version": "2024-10-21"}, headers={"api-key": key},
                                    json={"messages": [{"role": "user", "content": "secret prompt words"}],
                                          "max_tokens": 5}) as resp:
            await resp.read()
            return resp.status, resp.headers["apim-request-id"]

    async def account(self, group: str, name: str, location: str) -> str:
        """A new account with a gpt-4o-mini deployment; its ARM id."""
        await self.arm("PUT", f"/subscriptions/{SUB}/resourceGroups/{group}", {"location": location})
        account_id = f"/subscriptions/{SUB}/resourceGroups/{group}/providers/Microsoft.CognitiveServices/accounts/{name}"
        status, body = await self.arm("PUT", account_id, {"kind": "OpenAI", "sku": {"name": "S0"}, "location": location,
                                                         "properties": {"customSubDomainName": name}})
        assert status in (200, 201), body
        status, body = await self.arm("PUT", f"{account_id}/deployments/gpt-4o-mini", {
            "sku": {"name": "Standard", "capacity": 10},
            "properties": {"model": {"format": "OpenAI", "name": "gpt-4o-mini", "version": "2024-07-18"}}})
        assert status in (200, 201), body
        return account_id


async def start_lapis(home: Path, **env: str) -> Lapis:
    # inline: these tests look into the sinks' queues, which an observer process would hold
    conf = settings.load({"LAPIS_HOME": str(home), "LAPIS_DIAGNOSTICS_MAX_BACKOFF": "0.1", "LAPIS_OBSERVER": "inline",
                          **env})
    services = await build_services(conf)
    await demo.seed(services)
    client = TestClient(TestServer(create_app(conf, services)))
    await client.start_server()
    return Lapis(client, services, home)
