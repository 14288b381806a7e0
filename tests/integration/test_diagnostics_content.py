"""Prompt and response text in diagnostic logs, against one real server, through the openai client.

Off unless a setting asks (lapisIncludeContent). When asked, the workspace query API and
`lapis monitor log-analytics query` give back exactly what the client sent and received,
while no file under LAPIS_HOME holds that text (sealed under the account's data key); the
event hub destination gets it in the clear (the documented choice). A disabled customer
key makes the text read as a placeholder, and deleting the account shreds it for good.
"""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path

import pytest
import redis
import requests
from openai import AzureOpenAI

from lapis.diagnostics import content
from support.cli import Cli
from support.server import DEFAULT_SUBSCRIPTION, LapisProcess, start_server

SUB = f"/subscriptions/{DEFAULT_SUBSCRIPTION}"
DEMO = f"{SUB}/resourceGroups/lapis-demo/providers/Microsoft.CognitiveServices/accounts/lapis-demo"
RG = f"{SUB}/resourceGroups/lapis-demo/providers"
SETTINGS_API = "2021-05-01-preview"
WITH_TEXT = [{"category": "RequestResponse", "enabled": True, "lapisIncludeContent": True}]


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory):
    base = tmp_path_factory.mktemp("diag-content")
    server = start_server(base / "home", demo=True)
    try:
        yield server, Cli(base / "home", base / "cwd")
    finally:
        server.stop()


def workspace(name: str) -> str:
    return f"{RG}/Microsoft.OperationalInsights/workspaces/{name}"


def put_setting(server: LapisProcess, account: str, name: str, properties: dict) -> dict:
    answer = server.arm("PUT", f"{account}/providers/Microsoft.Insights/diagnosticSettings/{name}",
                        {"properties": properties}, SETTINGS_API)
    assert answer.status_code == 200, answer.text
    return answer.json()


def query(server: LapisProcess, workspace_id: str, text: str) -> list[dict]:
    answer = requests.get(f"{server.url}{workspace_id}/api/query", timeout=30,
                          params={"api-version": "2017-01-01-preview", "query": text, "timespan": "PT1H"},
                          headers={"Authorization": f"Bearer {server.admin_token}"})
    assert answer.status_code == 200, answer.text
    table = answer.json()["tables"][0]
    names = [c["name"] for c in table["columns"]]
    return [dict(zip(names, row)) for row in table["rows"]]


def row_for(server: LapisProcess, workspace_id: str, request_id: str) -> dict:
    """The request's RequestResponse row, once the sink has written it (the sinks are asynchronous)."""
    text = f"AzureDiagnostics | where CorrelationId == '{request_id}'"
    deadline = time.monotonic() + 20
    while True:
        found = query(server, workspace_id, text)
        if found or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    [row] = found
    return row


def client(endpoint: str, key: str) -> AzureOpenAI:
    return AzureOpenAI(azure_endpoint=endpoint, api_key=key, api_version="2024-10-21", max_retries=0)


def new_account(server: LapisProcess, name: str) -> tuple[str, str, AzureOpenAI]:
    path = server.account_path("lapis-demo", name)
    assert server.arm("PUT", path, {"kind": "OpenAI", "sku": {"name": "S0"}, "location": "eastus",
                                    "properties": {"customSubDomainName": name}}).status_code == 201
    assert server.arm("PUT", f"{path}/deployments/chat", {"sku": {"name": "Standard", "capacity": 10}, "properties": {
        "model": {"format": "OpenAI", "name": "gpt-4o-mini"}}}).status_code == 201
    key = server.arm("POST", f"{path}/listKeys").json()["key1"]
    return path, key, client(f"{server.url}/accounts/{name}", key)


def chat(openai: AzureOpenAI, deployment: str, words: str) -> tuple[str, list[dict], str]:
    messages = [{"role": "system", "content": "Answer briefly."}, {"role": "user", "content": words}]
    raw = openai.chat.completions.with_raw_response.create(model=deployment, messages=messages, max_tokens=24)
    return raw.headers["apim-request-id"], messages, raw.parse().choices[0].message.content


@pytest.fixture(scope="module")
def demo_calls(served) -> dict:
    """Calls on the demo account, whose settings send RequestResponse to three places: `plain`
    (no text asked), `text` (a workspace and a storage archive, text asked) and an event hub
    (text asked). Returns what was sent and received, and the rows."""
    server, _ = served
    namespace = f"ns{uuid.uuid4().hex[:10]}"
    put_setting(server, DEMO, "plain", {"workspaceId": workspace("ws-plain"),
                                        "logs": [{"category": "RequestResponse", "enabled": True}]})
    made = put_setting(server, DEMO, "text", {
        "workspaceId": workspace("ws-text"), "storageAccountId": f"{RG}/Microsoft.Storage/storageAccounts/archtext",
        "logs": WITH_TEXT})
    assert made["properties"]["logs"][0]["lapisIncludeContent"] is True
    shown = server.arm("GET", f"{DEMO}/providers/Microsoft.Insights/diagnosticSettings/text", api_version=SETTINGS_API)
    assert shown.json()["properties"]["logs"][0]["lapisIncludeContent"] is True
    put_setting(server, DEMO, "hub", {"eventHubAuthorizationRuleId": f"{RG}/Microsoft.EventHub/namespaces/{namespace}"
                                      "/authorizationRules/RootManageSharedAccessKey", "logs": WITH_TEXT})
    env = server.demo_env()
    openai = client(env["AZURE_OPENAI_ENDPOINT"], env["AZURE_OPENAI_KEY"])
    chat_id, messages, answer = chat(openai, "gpt-4o-mini", f"Tell me about zebra-{uuid.uuid4().hex}")
    stream_words = f"Stream a story about okapi-{uuid.uuid4().hex}"
    raw = openai.chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": stream_words}], max_tokens=24, stream=True)
    streamed = "".join(chunk.choices[0].delta.content or "" for chunk in raw.parse() if chunk.choices)
    inputs = [f"embed narwhal-{uuid.uuid4().hex}", f"embed quokka-{uuid.uuid4().hex}"]
    embedded = openai.embeddings.with_raw_response.create(model="text-embedding-3-small", input=inputs)
    assert len(embedded.parse().data) == 2 and answer and streamed
    ids = {"chat": chat_id, "stream": raw.headers["apim-request-id"], "embed": embedded.headers["apim-request-id"]}
    rows = {kind: row_for(server, workspace("ws-text"), request_id) for kind, request_id in ids.items()}
    plain = {kind: row_for(server, workspace("ws-plain"), request_id) for kind, request_id in ids.items()}
    return {"ids": ids, "rows": rows, "plain": plain, "namespace": namespace, "messages": messages,
            "answer": answer, "stream_words": stream_words, "streamed": streamed, "inputs": inputs,
            "texts": [messages[1]["content"], answer, stream_words, streamed, *inputs]}


def test_text_is_not_logged_unless_a_setting_asks(demo_calls, served):
    server, _ = served
    for row in demo_calls["plain"].values():
        assert row["Category"] == "RequestResponse" and row["promptTokens_d"] > 0
        assert "requestContent_s" not in row and "responseContent_s" not in row
        assert "Content" not in row["properties_s"]
    folder = server.home / "workspaces" / DEFAULT_SUBSCRIPTION / "lapis-demo" / "ws-plain"
    written = b"".join(p.read_bytes() for p in folder.glob("*.jsonl"))
    assert demo_calls["ids"]["chat"].encode() in written and b"lapis:v1:" not in written
    for text in demo_calls["texts"]:
        assert text.encode() not in written


def test_the_query_gives_back_exactly_what_the_client_sent_and_received(demo_calls):
    rows = demo_calls["rows"]
    assert json.loads(rows["chat"]["requestContent_s"]) == demo_calls["messages"]
    assert json.loads(rows["chat"]["responseContent_s"]) == [{"role": "assistant", "content": demo_calls["answer"]}]
    assert json.loads(rows["chat"]["properties_s"])["requestContent"] == rows["chat"]["requestContent_s"]
    assert json.loads(rows["stream"]["requestContent_s"]) == [{"role": "user", "content": demo_calls["stream_words"]}]
    assert json.loads(rows["stream"]["responseContent_s"]) == [
        {"role": "assistant", "content": demo_calls["streamed"]}]
    assert rows["stream"]["streamType_s"] == "Streaming"
    assert json.loads(rows["embed"]["requestContent_s"]) == demo_calls["inputs"]
    assert rows["embed"]["responseContent_s"] is None  # the column exists (other rows have it), empty here
    assert "responseContent" not in json.loads(rows["embed"]["properties_s"])


def test_the_cli_query_reads_the_text_and_can_filter_on_it(demo_calls, served):
    _, cli = served
    word = demo_calls["messages"][1]["content"].split("-")[-1]
    found = cli.json("monitor", "log-analytics", "query", "-w", "ws-text", "-g", "lapis-demo", "--table",
                     "AzureDiagnostics", "--where", f"requestContent_s contains '{word}'", "--timespan", "PT1H")
    assert [r["CorrelationId"] for r in found] == [demo_calls["ids"]["chat"]]
    assert json.loads(found[0]["responseContent_s"])[0]["content"] == demo_calls["answer"]


def test_no_file_under_lapis_home_holds_the_text(demo_calls, served):
    server, _ = served
    files = {p: p.read_bytes() for p in Path(server.home).rglob("*") if p.is_file()}
    assert any("workspaces" in p.parts for p in files) and any("storage" in p.parts for p in files)
    for path, raw in files.items():
        for text in demo_calls["texts"]:
            assert text.encode() not in raw, path
            assert json.dumps(text).encode() not in raw, path  # nor escaped as JSON
    sealed = [raw for p, raw in files.items() if "ws-text" in p.parts or "archtext" in p.parts]
    assert sealed and all(b"lapis:v1:acct-" in raw for raw in sealed)
    [blob] = [p for p in files if p.name == "PT1H.json" and "archtext" in p.parts]
    records = [json.loads(line) for line in blob.read_text().splitlines()]
    chat_record = next(r for r in records if r["correlationId"] == demo_calls["ids"]["chat"])
    assert chat_record["properties"]["requestContent"].startswith("lapis:v1:acct-")


def test_the_event_hub_gets_the_text_in_the_clear(demo_calls):
    broker = redis.Redis.from_url("redis://127.0.0.1:6379/0")
    stream = f"eventhubs/{demo_calls['namespace']}/insights-logs-requestresponse"
    try:
        deadline = time.monotonic() + 20
        records: list[dict] = []
        while len(records) < 3 and time.monotonic() < deadline:
            records = [r for _, fields in broker.xrange(stream) for r in json.loads(fields[b"body"])["records"]]
            time.sleep(0.05)
        by_id = {r["correlationId"]: r["properties"] for r in records}
        chat_props = by_id[demo_calls["ids"]["chat"]]
        assert json.loads(chat_props["requestContent"]) == demo_calls["messages"]
        assert json.loads(chat_props["responseContent"])[0]["content"] == demo_calls["answer"]
    finally:
        broker.delete(stream)
        broker.close()


def vault(server: LapisProcess, method: str, tail: str, body: dict | None = None) -> requests.Response:
    return requests.request(method, f"{server.url}/vaults/{tail}", params={"api-version": "7.4"}, json=body,
                            headers={"Authorization": f"Bearer {server.admin_token}"}, timeout=60)


def test_a_disabled_customer_key_reads_as_a_placeholder_until_enabled(served):
    server, _ = served
    path, _, openai = new_account(server, "textcmk")
    assert vault(server, "POST", "kvtext/keys/cmk/create", {"kty": "RSA"}).status_code == 200
    assert server.arm("PATCH", path, {"properties": {"encryption": {"keySource": "Microsoft.KeyVault",
                                                                    "keyVaultProperties": {
                                                                        "keyName": "cmk",
                                                                        "keyVaultUri": f"{server.url}/vaults/kvtext/"}}}
                                      }).status_code == 200
    put_setting(server, path, "text", {"workspaceId": workspace("ws-cmk"), "logs": WITH_TEXT})
    request_id, messages, answer = chat(openai, "chat", f"about tapirs-{uuid.uuid4().hex}")
    row = row_for(server, workspace("ws-cmk"), request_id)
    assert json.loads(row["requestContent_s"]) == messages
    assert vault(server, "PATCH", "kvtext/keys/cmk", {"attributes": {"enabled": False}}).status_code == 200
    locked = row_for(server, workspace("ws-cmk"), request_id)
    assert locked["requestContent_s"] == locked["responseContent_s"] == content.KEY_UNAVAILABLE
    assert json.loads(locked["properties_s"])["requestContent"] == content.KEY_UNAVAILABLE
    assert locked["promptTokens_d"] == row["promptTokens_d"]  # the rest of the row reads as before
    assert vault(server, "PATCH", "kvtext/keys/cmk", {"attributes": {"enabled": True}}).status_code == 200
    back = row_for(server, workspace("ws-cmk"), request_id)
    assert json.loads(back["responseContent_s"])[0]["content"] == answer


def test_deleting_the_account_shreds_its_logged_text(served):
    server, _ = served
    path, _, openai = new_account(server, "textgone")
    put_setting(server, path, "text", {"workspaceId": workspace("ws-gone"), "logs": WITH_TEXT})
    request_id, messages, _ = chat(openai, "chat", f"about pangolins-{uuid.uuid4().hex}")
    assert json.loads(row_for(server, workspace("ws-gone"), request_id)["requestContent_s"]) == messages
    assert server.arm("DELETE", path).status_code in (200, 202, 204)
    gone = row_for(server, workspace("ws-gone"), request_id)
    assert gone["requestContent_s"] == gone["responseContent_s"] == content.UNREADABLE
    folder = server.home / "workspaces" / DEFAULT_SUBSCRIPTION / "lapis-demo" / "ws-gone"
    assert b"lapis:v1:acct-" in (folder / "AzureDiagnostics.jsonl").read_bytes()  # the ciphertext is still there
