"""The serving admin API (/lapis/admin/backends, pools, faults) over raw HTTP
against a real server, on SQLite and PostgreSQL: round trips, secrets never
returned, canonical names, data surviving a restart, and every validation
error's exact ARM body."""

from __future__ import annotations

import asyncio
import json

import pytest
import requests

from lapis.store.sql import SqlStore
from lapis.store.serving import ServingStore
from support.server import DEFAULT_SUBSCRIPTION, LapisProcess, start_server

SUB = f"/subscriptions/{DEFAULT_SUBSCRIPTION}"
OTHER_SUB = "5e7a1c00-0000-4000-8000-00000000beef"
ACCT = f"{SUB}/resourceGroups/rg1/providers/Microsoft.CognitiveServices/accounts/acct1"
SECRET = "sk-upstream-key-3f9a1c"
CLIENT_SECRET = "entra-client-secret-77b2"
VLLM = {"region": "eastus", "model": "gpt-4o-mini", "kind": "openai-compatible", "url": "http://127.0.0.1:8000/v1/",
        "upstreamModel": "qwen2.5-7b", "apiKey": SECRET}
AZURE = {"region": "westus", "model": "gpt-4o", "kind": "azure", "url": "http://127.0.0.1:9443",
         "deployment": "prod", "auth": {"tenant": "t-1", "clientId": "c-1", "clientSecret": CLIENT_SECRET},
         "timeoutSeconds": 30, "weight": 3}


def admin(server, method: str, path: str, body=None, token: str | None = None, **kw) -> requests.Response:
    headers = {"Authorization": f"Bearer {token or server.admin_token}"}
    return requests.request(method, f"{server.url}/lapis/admin/{path}", json=body, headers=headers, timeout=30, **kw)


def arm_error(resp: requests.Response, status: int, code: str, message: str) -> None:
    """ARM's envelope, byte for byte, with ARM's error headers."""
    assert resp.status_code == status, resp.text
    assert resp.content == json.dumps({"error": {"code": code, "message": message}}, separators=(",", ":")).encode()
    assert resp.headers["x-ms-error-code"] == code


def vllm_json(**changes) -> dict:
    return {"id": "vllm-1", "region": "eastus", "model": "gpt-4o-mini", "kind": "openai-compatible",
            "url": "http://127.0.0.1:8000/v1", "upstreamModel": "qwen2.5-7b", "deployment": "", "apiVersion": "",
            "auth": None, "hasSecret": True, "timeoutSeconds": 60.0, "weight": 1, **changes}


def setup_deployments(server) -> None:
    """rg1/acct1 with deployments chat and spare (eastus) in the local subscription."""
    assert server.arm("POST", f"{SUB}/providers/Microsoft.CognitiveServices/register").ok
    assert server.arm("PUT", f"{SUB}/resourceGroups/rg1", {"location": "eastus"}).status_code == 201
    assert server.arm("PUT", ACCT, {"kind": "OpenAI", "sku": {"name": "S0"}, "location": "eastus"}).status_code == 201
    for name in ("chat", "spare"):
        resp = server.arm("PUT", f"{ACCT}/deployments/{name}", {
            "sku": {"name": "Standard", "capacity": 10},
            "properties": {"model": {"format": "OpenAI", "name": "gpt-4o-mini"}}})
        assert resp.status_code == 201, resp.text


@pytest.fixture()
def server(tmp_path, database_url):
    process = start_server(tmp_path / "home", LAPIS_DATABASE_URL=database_url)
    process.database_url = database_url
    yield process
    process.stop()


@pytest.fixture(scope="module")
def shared(tmp_path_factory):
    """One SQLite server for the validation tests (they write nothing that stays)."""
    process = start_server(tmp_path_factory.mktemp("serving-home"))
    setup_deployments(process)
    assert admin(process, "PUT", "backends/b1", {"region": "eastus", "model": "gpt-4o-mini",
                                                 "kind": "simulator"}).status_code == 201
    yield process
    process.stop()


def test_backends_round_trip_without_ever_returning_a_secret(server):
    created = admin(server, "PUT", "backends/vllm-1", VLLM)
    assert created.status_code == 201 and created.json() == vllm_json()
    azure = admin(server, "PUT", "backends/Az-West", AZURE)
    assert azure.status_code == 201
    assert azure.json() == {"id": "Az-West", "region": "westus", "model": "gpt-4o", "kind": "azure",
                            "url": "http://127.0.0.1:9443", "upstreamModel": "", "deployment": "prod",
                            "apiVersion": "2024-10-21", "auth": {"tenant": "t-1", "clientId": "c-1", "authority": ""},
                            "hasSecret": True, "timeoutSeconds": 30.0, "weight": 3}
    sim = admin(server, "PUT", "backends/sim-1", {"region": "East US", "model": "GPT-4O-MINI", "kind": "simulator"})
    assert sim.json() == {"id": "sim-1", "region": "eastus", "model": "gpt-4o-mini", "kind": "simulator", "url": "",
                          "upstreamModel": "", "deployment": "", "apiVersion": "", "auth": None, "hasSecret": False,
                          "timeoutSeconds": 60.0, "weight": 1}

    listed = admin(server, "GET", "backends")
    assert [b["id"] for b in listed.json()["value"]] == ["sim-1", "vllm-1", "Az-West"]  # by region, model, id
    assert admin(server, "GET", "backends/AZ-WEST").json()["id"] == "Az-West"  # ids are case-insensitive

    # A replace without a secret keeps it; "apiKey": "" removes it; the case of the id stays.
    kept = admin(server, "PUT", "backends/VLLM-1", {**VLLM, "apiKey": None, "weight": 2})
    assert kept.status_code == 200 and kept.json() == vllm_json(weight=2)
    assert admin(server, "PUT", "backends/az-west", {**AZURE, "auth": {"tenant": "t-2", "clientId": "c-1"}}).json()[
        "hasSecret"] is True
    cleared = admin(server, "PUT", "backends/vllm-1", {**VLLM, "apiKey": ""})
    assert cleared.json() == vllm_json(hasSecret=False)
    admin(server, "PUT", "backends/vllm-1", VLLM)

    for text in (created.text, azure.text, listed.text, admin(server, "GET", "backends").text, server.log()):
        assert SECRET not in text and CLIENT_SECRET not in text

    assert admin(server, "DELETE", "backends/sim-1").status_code == 200
    assert admin(server, "DELETE", "backends/sim-1").status_code == 204
    arm_error(admin(server, "GET", "backends/sim-1"), 404, "NotFound",
              "Specified resource '/lapis/admin/backends/sim-1' cannot be found.")


def test_pools_and_members(server):
    setup_deployments(server)
    assert admin(server, "PUT", "backends/vllm-1", VLLM).status_code == 201
    chat = f"{ACCT}/deployments/chat"
    spare = f"{ACCT}/deployments/spare"
    given = chat.lower().replace("/deployments/chat", "/deployments/CHAT")  # any case; stored canonical
    created = admin(server, "PUT", "pools/front", {"deploymentId": given, "members": [
        {"id": "local", "kind": "deployment", "target": spare.upper(), "priority": 2, "weight": 5},
        {"id": "engine", "kind": "backend", "target": "VLLM-1"}]})
    assert created.status_code == 201, created.text
    pool = {"name": "front", "subscriptionId": DEFAULT_SUBSCRIPTION, "deploymentId": chat, "members": [
        {"id": "engine", "kind": "backend", "target": "vllm-1", "priority": 1, "weight": 1,
         "key": "member:front/engine"},
        {"id": "local", "kind": "deployment", "target": spare, "priority": 2, "weight": 5,
         "key": "member:front/local"}]}
    assert created.json() == pool
    assert admin(server, "GET", "pools/FRONT").json() == pool
    assert admin(server, "GET", "pools").json() == {"value": [pool]}

    # PUT again without members keeps them; a member PUT adds or replaces one.
    assert admin(server, "PUT", "pools/front", {"deploymentId": chat}).json() == pool
    added = admin(server, "PUT", "pools/front/members/second", {"kind": "backend", "target": "vllm-1", "priority": 0})
    assert added.status_code == 201
    assert [(m["id"], m["priority"]) for m in added.json()["members"]] == [("second", 0), ("engine", 1), ("local", 2)]
    replaced = admin(server, "PUT", "pools/front/members/SECOND", {"kind": "backend", "target": "vllm-1",
                                                                   "weight": 7})
    assert replaced.status_code == 200
    second = next(m for m in replaced.json()["members"] if m["id"] == "second")
    assert second == {"id": "second", "kind": "backend", "target": "vllm-1", "priority": 1, "weight": 7,
                      "key": "member:front/second"}
    assert admin(server, "DELETE", "pools/front/members/second").status_code == 200
    assert admin(server, "DELETE", "pools/front/members/second").status_code == 204
    assert admin(server, "GET", "pools/front").json() == pool
    # The deployment a pool serves may be a member: that member is the deployment's own engines.
    home = admin(server, "PUT", "pools/front/members/home", {"kind": "deployment", "target": chat, "priority": 0})
    assert home.status_code == 201 and home.json()["members"][0]["target"] == chat
    assert admin(server, "DELETE", "pools/front/members/home").status_code == 200

    # One pool per deployment; a backend in a pool stays until it leaves the pool.
    arm_error(admin(server, "PUT", "pools/again", {"deploymentId": chat}), 409, "Conflict",
              f"The deployment '{chat}' is already served by the pool 'front'.")
    arm_error(admin(server, "DELETE", "backends/vllm-1"), 409, "Conflict",
              "The backend 'vllm-1' is a member of the pool(s) 'front'; remove it from them first.")

    # Pools live in a subscription: ?subscription= names another one.
    assert requests.post(f"{server.url}/lapis/admin/subscriptions", json={"displayName": "other",
                         "subscriptionId": OTHER_SUB}, headers={"Authorization": f"Bearer {server.admin_token}"},
                         timeout=30).status_code == 201
    assert admin(server, "GET", f"pools?subscription={OTHER_SUB}").json() == {"value": []}
    arm_error(admin(server, "GET", f"pools/front?subscription={OTHER_SUB}"), 404, "NotFound",
              "Specified resource '/lapis/admin/pools/front' cannot be found.")
    arm_error(admin(server, "PUT", f"pools/front?subscription={OTHER_SUB}", {"deploymentId": spare}), 400,
              "InvalidParameter", f"The deployment '{spare}' is not in the pool's subscription '{OTHER_SUB}'; "
              "name the subscription with ?subscription=.")

    assert admin(server, "DELETE", "pools/front").status_code == 200
    assert admin(server, "DELETE", "pools/front").status_code == 204
    assert admin(server, "GET", "pools").json() == {"value": []}
    assert admin(server, "DELETE", "backends/vllm-1").status_code == 200


def test_faults(server):
    setup_deployments(server)
    assert admin(server, "PUT", "backends/vllm-1", VLLM).status_code == 201
    assert admin(server, "PUT", "pools/front", {"deploymentId": f"{ACCT}/deployments/chat", "members": [
        {"id": "Engine", "kind": "backend", "target": "vllm-1"}]}).status_code == 201

    region = admin(server, "PUT", "faults/region/East US", {"rate429": 0.25, "rate503": 0.5, "retryAfterSeconds": 2})
    assert region.status_code == 201
    assert region.json() == {"scope": "region", "target": "eastus", "rate429": 0.25, "rate503": 0.5,
                             "retryAfterSeconds": 2.0, "latencyMs": 0.0, "hang": False, "cutAfter": None,
                             "down": False}
    again = admin(server, "PUT", "faults/region/eastus", {"latencyMs": 300, "cutAfter": 0})  # replaces, not merges
    assert again.status_code == 200
    assert again.json() == {"scope": "region", "target": "eastus", "rate429": 0.0, "rate503": 0.0,
                            "retryAfterSeconds": 1.0, "latencyMs": 300.0, "hang": False, "cutAfter": 0,
                            "down": False}
    # Member keys: the slash may come encoded or not; names come back in their canonical case.
    assert admin(server, "PUT", "faults/member/member:FRONT%2Fengine", {"down": True}).json()["target"] == \
        "member:front/Engine"
    assert admin(server, "PUT", "faults/member/backend:VLLM-1", {"hang": True}).json()["target"] == "backend:vllm-1"
    assert admin(server, "PUT", "faults/member/sim:WestUS", {"rate429": 1}).json()["target"] == "sim:westus"
    listed = admin(server, "GET", "faults").json()["value"]
    assert [(f["scope"], f["target"]) for f in listed] == [
        ("member", "backend:vllm-1"), ("member", "member:front/Engine"), ("member", "sim:westus"),
        ("region", "eastus")]

    assert admin(server, "DELETE", "faults/member/member:front/ENGINE").status_code == 200
    assert admin(server, "DELETE", "faults/member/member:front/engine").status_code == 204
    assert admin(server, "DELETE", "faults").json() == {"removed": 3}
    assert admin(server, "GET", "faults").json() == {"value": []}
    assert admin(server, "DELETE", "faults").json() == {"removed": 0}


def test_everything_survives_a_restart(server, tmp_path):
    setup_deployments(server)
    assert admin(server, "PUT", "backends/vllm-1", VLLM).status_code == 201
    assert admin(server, "PUT", "backends/az-west", AZURE).status_code == 201
    assert admin(server, "PUT", "pools/front", {"deploymentId": f"{ACCT}/deployments/chat", "members": [
        {"id": "engine", "kind": "backend", "target": "vllm-1", "priority": 2, "weight": 4}]}).status_code == 201
    assert admin(server, "PUT", "faults/member/member:front/engine", {"rate503": 0.5, "cutAfter": 3}).ok
    before = {what: admin(server, "GET", what).json() for what in ("backends", "pools", "faults")}
    server.stop()
    again = LapisProcess(home=server.home, port=server.port, env=server.env)
    try:
        again.start()  # inside the try: a server that fails to become ready is stopped too
        assert {what: admin(again, "GET", what).json() for what in ("backends", "pools", "faults")} == before
    finally:
        again.stop()

    async def stored_secrets() -> tuple[dict[str, tuple[str, dict]], list[str]]:
        store = await SqlStore.open(server.database_url, server.home / "keys" / "kek")
        try:
            raw = [r["secret"] for r in await store.db.fetch("SELECT secret FROM serving_backends")]
            return {b.id: (b.secret, b.auth) for b in await ServingStore(store.db, store.keyring).backends()}, raw
        finally:
            await store.close()

    secrets, raw = asyncio.run(stored_secrets())
    assert secrets == {
        "vllm-1": (SECRET, {}), "az-west": (CLIENT_SECRET, {"tenant": "t-1", "client_id": "c-1", "authority": ""})}
    assert all(value.startswith("lapis:v1:") for value in raw)  # sealed at rest
    assert not any(SECRET in value or CLIENT_SECRET in value for value in raw)


BAD_BACKENDS = [
    ({**VLLM, "kind": "vllm"}, "The value 'vllm' of 'kind' is invalid. Valid values are 'simulator', "
                               "'openai-compatible', 'azure'."),
    ({**VLLM, "url": None}, "The property 'url' is required for a backend of kind 'openai-compatible'."),
    ({**AZURE, "url": ""}, "The property 'url' is required for a backend of kind 'azure'."),
    ({**VLLM, "url": "127.0.0.1:8000/v1"}, "The value '127.0.0.1:8000/v1' of 'url' is invalid. It must be an "
                                           "absolute http:// or https:// URL."),
    ({**VLLM, "model": "gpt-5-imaginary"}, "The model 'gpt-5-imaginary' is not in the catalogue; `lapis "
                                           "cognitiveservices model list --location <region>` lists the models."),
    ({**VLLM, "model": 4}, "The value of 'model' must be a string."),
    ({**VLLM, "region": "mars"}, None),  # message lists the regions: checked by prefix below
    ({**VLLM, "weight": 0}, "The value '0' of 'weight' is invalid. It must be an integer of at least 1."),
    ({**VLLM, "weight": "2"}, "The value '2' of 'weight' is invalid. It must be an integer of at least 1."),
    ({**VLLM, "weight": 1.5}, "The value '1.5' of 'weight' is invalid. It must be an integer of at least 1."),
    ({**VLLM, "timeoutSeconds": 0}, "The value '0' of 'timeoutSeconds' is invalid. It must be a number above 0."),
    ({**VLLM, "deployment": "x"}, "The property 'deployment' does not apply to a backend of kind "
                                  "'openai-compatible'."),
    ({"region": "eastus", "model": "gpt-4o-mini", "kind": "simulator", "url": "http://x"},
     "The property 'url' does not apply to a backend of kind 'simulator'."),
    ({**AZURE, "auth": None}, "A backend of kind 'azure' needs 'apiKey' or 'auth' with tenant, clientId and "
                              "clientSecret."),
    ({**AZURE, "auth": {"clientId": "c", "clientSecret": "s"}}, "The property 'tenant' is required in 'auth'."),
    ({**AZURE, "auth": {"tenant": "t", "clientId": "c"}}, "The property 'clientSecret' is required in 'auth'."),
    ({**AZURE, "apiKey": "k"}, "Give either 'apiKey' or 'auth' (client credentials), not both."),
    ({**AZURE, "deployment": ""}, "The property 'deployment' is required for a backend of kind 'azure'."),
    ({**AZURE, "auth": "secret"}, "The value of 'auth' must be a JSON object."),
]


@pytest.mark.parametrize("body, message", BAD_BACKENDS)
def test_bad_backends_get_400(shared, body, message):
    resp = admin(shared, "PUT", "backends/new-one", body)
    if message is None:
        assert resp.status_code == 400 and resp.json()["error"]["code"] == "InvalidParameter"
        assert resp.json()["error"]["message"].startswith(
            "The value 'mars' of 'region' is invalid. List of available regions is '")
        assert "eastus" in resp.json()["error"]["message"]
    else:
        arm_error(resp, 400, "InvalidParameter", message)
    assert admin(shared, "GET", "backends/new-one").status_code == 404  # nothing was written


def test_bad_names_and_bodies(shared):
    arm_error(admin(shared, "PUT", "backends/-dash", VLLM), 400, "InvalidParameter",
              "The backend id '-dash' is invalid. It can only include letters, digits, periods, underscores and "
              "hyphens, must start with a letter or digit, and has at most 64 characters.")
    resp = requests.put(f"{shared.url}/lapis/admin/backends/b2", data=b"{not json",
                        headers={"Authorization": f"Bearer {shared.admin_token}"}, timeout=30)
    assert resp.status_code == 400 and resp.json()["error"]["code"] == "InvalidRequestContent"
    arm_error(admin(shared, "GET", "backends", token="wrong"), 401, "InvalidAuthenticationToken",
              "The access token is invalid.")
    missing = requests.get(f"{shared.url}/lapis/admin/faults", timeout=30)
    arm_error(missing, 401, "AuthenticationFailed", "Authentication failed. The 'Authorization' header is missing.")
    arm_error(admin(shared, "GET", "pools?subscription=00000000-0000-0000-0000-000000000000"), 404,
              "SubscriptionNotFound", "The subscription '00000000-0000-0000-0000-000000000000' could not be found.")


def test_bad_pools_get_arm_errors(shared):
    chat = f"{ACCT}/deployments/chat"
    arm_error(admin(shared, "PUT", "pools/p", {"deploymentId": f"{ACCT}/chat"}), 400, "LinkedInvalidPropertyId",
              f"Property id '{ACCT}/chat' at path 'deploymentId' is invalid. Expect fully qualified resource Id of a "
              "deployment: '/subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}/providers/"
              "Microsoft.CognitiveServices/accounts/{accountName}/deployments/{deploymentName}'.")
    arm_error(admin(shared, "PUT", "pools/p", {}), 400, "InvalidParameter",
              "The property 'deploymentId' is required for a pool.")
    arm_error(admin(shared, "PUT", "pools/p", {"deploymentId": f"{ACCT}/deployments/nope"}), 404, "NotFound",
              f"Specified resource '{ACCT}/deployments/nope' cannot be found.")
    no_account = chat.replace("acct1", "ghost")
    arm_error(admin(shared, "PUT", "pools/p", {"deploymentId": no_account}), 404, "NotFound",
              f"Specified resource '{no_account}' cannot be found.")

    def members(*items) -> requests.Response:
        return admin(shared, "PUT", "pools/p", {"deploymentId": chat, "members": list(items)})

    arm_error(members({"id": "m", "kind": "server", "target": "b1"}), 400, "InvalidParameter",
              "The value 'server' of 'kind' is invalid. Valid values are 'deployment', 'backend'.")
    arm_error(members({"id": "m", "kind": "deployment", "target": "acct1/chat"}), 400, "LinkedInvalidPropertyId",
              "Property id 'acct1/chat' at path 'target' is invalid. Expect fully qualified resource Id of a "
              "deployment: '/subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}/providers/"
              "Microsoft.CognitiveServices/accounts/{accountName}/deployments/{deploymentName}'.")
    arm_error(members({"id": "m", "kind": "backend", "target": "ghost"}), 404, "NotFound",
              "Specified resource '/lapis/admin/backends/ghost' cannot be found.")
    arm_error(members({"id": "m", "kind": "backend", "target": "b1", "weight": 0}), 400, "InvalidParameter",
              "The value '0' of 'weight' is invalid. It must be an integer of at least 1.")
    arm_error(members({"id": "m", "kind": "backend", "target": "b1", "priority": -1}), 400, "InvalidParameter",
              "The value '-1' of 'priority' is invalid. It must be an integer of at least 0.")
    arm_error(members({"id": "m", "kind": "backend", "target": "b1"}, {"id": "M", "kind": "backend", "target": "b1"}),
              400, "InvalidParameter", "The member ids of a pool must be unique.")
    arm_error(members({"kind": "backend", "target": "b1"}), 400, "InvalidParameter",
              "The property 'id' is required for a pool member.")
    arm_error(admin(shared, "PUT", "pools/p", {"deploymentId": chat, "members": {"id": "m"}}), 400,
              "InvalidParameter", "The value of 'members' must be an array of objects.")
    arm_error(admin(shared, "PUT", "pools/nope/members/m", {"kind": "backend", "target": "b1"}), 404, "NotFound",
              "Specified resource '/lapis/admin/pools/nope' cannot be found.")
    assert admin(shared, "GET", "pools").json() == {"value": []}  # nothing was written


BAD_FAULTS = [
    ("region/eastus", {"rate429": 1.5}, "The value '1.5' of 'rate429' is invalid. It must be a number from 0 to 1."),
    ("region/eastus", {"rate503": -0.1}, "The value '-0.1' of 'rate503' is invalid. It must be a number from 0 to 1."),
    ("region/eastus", {"rate429": 0.6, "rate503": 0.5}, "The shares 'rate429' and 'rate503' add up to more than 1."),
    ("region/eastus", {"rate429": True}, "The value 'true' of 'rate429' is invalid. It must be a number from 0 to 1."),
    ("region/eastus", {"latencyMs": -5}, "The value '-5' of 'latencyMs' is invalid. It must be a number of at least "
                                         "0."),
    ("region/eastus", {"retryAfterSeconds": -1, "down": True},
     "The value '-1' of 'retryAfterSeconds' is invalid. It must be a number of at least 0."),
    ("region/eastus", {"cutAfter": -1}, "The value '-1' of 'cutAfter' is invalid. It must be an integer of at least "
                                        "0."),
    ("region/eastus", {"hang": "yes"}, "The value 'yes' of 'hang' is invalid. It must be true or false."),
    ("region/eastus", {"rate429": 0, "hang": False}, "The fault does nothing: give at least one of rate429, rate503, "
                                                     "latencyMs, hang, cutAfter or down."),
    ("zone/eastus", {"down": True}, "The value 'zone' of 'scope' is invalid. Valid values are 'region', 'member'."),
    ("member/vllm-1", {"down": True}, "The member key 'vllm-1' is invalid. Write backend:<backend id>, sim:<region> "
                                      "or member:<pool>/<member id>."),
    ("member/member:front", {"down": True}, "The member key 'member:front' is invalid. Write backend:<backend id>, "
                                            "sim:<region> or member:<pool>/<member id>."),
]


@pytest.mark.parametrize("where, body, message", BAD_FAULTS)
def test_bad_faults_get_400(shared, where, body, message):
    arm_error(admin(shared, "PUT", f"faults/{where}", body), 400, "InvalidParameter", message)
    assert admin(shared, "GET", "faults").json() == {"value": []}


def test_faults_on_unknown_things(shared):
    arm_error(admin(shared, "PUT", "faults/member/backend:ghost", {"down": True}), 404, "NotFound",
              "Specified resource '/lapis/admin/backends/ghost' cannot be found.")
    arm_error(admin(shared, "PUT", "faults/member/member:front/m", {"down": True}), 404, "NotFound",
              "Specified resource '/lapis/admin/pools/front/members/m' cannot be found.")
    assert admin(shared, "PUT", "faults/region/moon", {"down": True}).json()["error"]["message"].startswith(
        "The value 'moon' of 'target' is invalid. List of available regions is '")
    nan = requests.put(f"{shared.url}/lapis/admin/faults/region/eastus", data=b'{"latencyMs": NaN}',
                       headers={"Authorization": f"Bearer {shared.admin_token}"}, timeout=30)
    arm_error(nan, 400, "InvalidParameter", "The value 'nan' of 'latencyMs' is invalid. It must be a number of at "
                                            "least 0.")
    assert admin(shared, "GET", "faults").json() == {"value": []}
