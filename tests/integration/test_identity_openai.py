"""The setup guide's "token" path end to end, as a workload runs it: an
unmodified DefaultAzureCredential() (managed identity, both styles) feeds
get_bearer_token_provider, and the openai AzureOpenAI client streams a chat
with the token once the workload's identity holds Cognitive Services OpenAI User."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import requests

from support.server import DEFAULT_SUBSCRIPTION

ROOT = Path(__file__).resolve().parents[2]
OPENAI_USER = "5e0bd9bd-7b93-4f28-af87-19fc36ad61bd"

WORKLOAD = r"""
import json, os, sys
from azure.identity import DefaultAzureCredential, get_bearer_token_provider
from openai import AzureOpenAI
provider = get_bearer_token_provider(DefaultAzureCredential(), "https://cognitiveservices.azure.com/.default")
client = AzureOpenAI(azure_endpoint=os.environ["ENDPOINT"], api_version="2024-10-21", azure_ad_token_provider=provider,
                     max_retries=0)
stream = client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}],
                                        stream=True, stream_options={"include_usage": True})
chunks = list(stream)
plain = client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
print(json.dumps({"text": "".join(c.choices[0].delta.content or "" for c in chunks if c.choices),
                  "usage": chunks[-1].usage.total_tokens, "plain": plain.choices[0].message.content}))
"""


def admin(server, method: str, path: str, **kw) -> requests.Response:
    return requests.request(method, f"{server.url}/lapis/admin/{path}", timeout=10,
                            headers={"Authorization": f"Bearer {server.admin_token}"}, **kw)


@pytest.fixture(scope="module")
def workload_can_chat(lapis_server):
    """Give the server's workload identity the OpenAI User role on the demo account."""
    workload = next(m for m in admin(lapis_server, "GET", "managedIdentities").json()["value"]
                    if m["resourceId"] == "/lapis/workload")
    scope = lapis_server.account_path("lapis-demo", "lapis-demo")
    resp = lapis_server.arm("PUT", f"{scope}/providers/Microsoft.Authorization/roleAssignments/{uuid.uuid4()}", {
        "properties": {"roleDefinitionId": f"/subscriptions/{DEFAULT_SUBSCRIPTION}/providers/Microsoft.Authorization/"
                                           f"roleDefinitions/{OPENAI_USER}",
                       "principalId": workload["principalId"], "principalType": "ServicePrincipal"}},
        api_version="2022-04-01")
    assert resp.status_code == 201, resp.text
    return lapis_server


@pytest.mark.parametrize("style", ["appservice", "imds"])
def test_default_azure_credential_and_openai(workload_can_chat, demo, tmp_path, style):
    server = workload_can_chat
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("AZURE_", "IDENTITY_", "MSI_", "IMDS_", "LAPIS_", "OPENAI_"))}
    exports = admin(server, "GET", "identity/environment").json()
    if style == "appservice":
        env.update(IDENTITY_ENDPOINT=exports["IDENTITY_ENDPOINT"], IDENTITY_HEADER=exports["IDENTITY_HEADER"])
    else:
        env["AZURE_POD_IDENTITY_AUTHORITY_HOST"] = exports["AZURE_POD_IDENTITY_AUTHORITY_HOST"]
    env["ENDPOINT"] = demo["AZURE_OPENAI_ENDPOINT"]
    done = subprocess.run([sys.executable, "-c", WORKLOAD], env=env, capture_output=True, text=True, timeout=120,
                          cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout)
    assert out["text"] and out["plain"] and out["usage"] > 0
