"""Subscription quota over raw HTTP: the usages API, InsufficientQuota on create
and scale-up (golden bodies, §5.5), capacity freed by delete, and the quota
increase requests (file, approve, reject). Each test takes a subscription of
its own, so the demo's deployments on the default subscription do not count."""

from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from lapis.catalog import SKU_NAMES, load_catalogue
from support.server import DEFAULT_SUBSCRIPTION

PROVIDER = "providers/Microsoft.CognitiveServices"
MINI = "Tokens Per Minute (thousands) - GPT-4o-Mini"


class Sub:
    """A new approved, registered subscription with a group in eastus."""

    def __init__(self, server):
        self.server = server
        resp = requests.post(f"{server.url}/lapis/admin/subscriptions", json={"displayName": "quota",
                                                                              "approved": True},
                             headers={"Authorization": f"Bearer {server.admin_token}"}, timeout=30)
        assert resp.status_code == 201, resp.text
        self.id = resp.json()["subscriptionId"]
        self.base = f"/subscriptions/{self.id}"
        assert server.arm("POST", f"{self.base}/providers/Microsoft.CognitiveServices/register").ok
        assert server.arm("PUT", f"{self.base}/resourcegroups/rg", {"location": "eastus"}).status_code == 201

    def account(self, location: str = "eastus") -> str:
        name = f"q{uuid.uuid4().hex[:10]}"
        path = self.server.account_path("rg", name, self.id)
        resp = self.server.arm("PUT", path, {"kind": "OpenAI", "sku": {"name": "S0"}, "location": location})
        assert resp.status_code == 201, resp.text
        return path

    def deploy(self, account: str, name: str, capacity: int, model: str = "gpt-4o-mini",
               sku: str = "Standard") -> requests.Response:
        return self.server.arm("PUT", f"{account}/deployments/{name}", {
            "sku": {"name": sku, "capacity": capacity}, "properties": {"model": {"format": "OpenAI", "name": model}}})

    def usages(self, location: str = "eastus") -> dict[str, dict]:
        resp = self.server.arm("GET", f"{self.base}/{PROVIDER}/locations/{location}/usages")
        assert resp.status_code == 200, resp.text
        return {item["name"]["value"]: item for item in resp.json()["value"]}

    def file(self, limit, model: str = "gpt-4o-mini", sku: str = "Standard",
             location: str = "eastus") -> requests.Response:
        return self.server.arm("POST", f"{self.base}/{PROVIDER}/locations/{location}/quotaRequests",
                               {"model": model, "sku": sku, "limit": limit})


def admin(server, method: str, path: str, body=None) -> requests.Response:
    return requests.request(method, f"{server.url}/lapis/admin/{path}", json=body, timeout=30,
                            headers={"Authorization": f"Bearer {server.admin_token}"})


def insufficient(required: int, available: int, usage: int, limit: int, quota: str = MINI) -> bytes:
    """The 2024+ InsufficientQuota body, written out from §5.5 ("require", not "requires")."""
    return ('{"error":{"code":"InsufficientQuota","message":"This operation require %d new capacity in quota %s, '
            'which is bigger than the current available capacity %d. The current quota usage is %d and the quota '
            'limit is %d for quota %s."}}' % (required, quota, available, usage, limit, quota)).encode()


def expect_insufficient(resp: requests.Response, body: bytes) -> None:
    assert resp.status_code == 400, resp.text
    assert resp.content == body
    assert resp.headers["x-ms-error-code"] == "InsufficientQuota"


@pytest.fixture()
def sub(lapis_server) -> Sub:
    return Sub(lapis_server)


def test_usages_list_every_offer_and_reflect_deployments(sub):
    cat = load_catalogue()
    usages = sub.usages()
    offered = {f"OpenAI.{s}.{m.name}" for m in cat.models for s in SKU_NAMES if "eastus" in m.skus.get(s, {})}
    assert set(usages) == offered
    assert usages["OpenAI.Standard.gpt-4o-mini"] == {
        "name": {"value": "OpenAI.Standard.gpt-4o-mini", "localizedValue": MINI},
        "currentValue": 0.0, "limit": 450.0, "unit": "Count"}
    assert usages["OpenAI.GlobalStandard.gpt-4o"]["name"]["localizedValue"] == (
        "Tokens Per Minute (thousands) - gpt-4o - GlobalStandard")
    assert usages["OpenAI.Standard.text-embedding-3-small"]["name"]["localizedValue"] == (
        "Tokens Per Minute (thousands) - Text-Embedding-3-Small")
    provisioned = sub.usages("eastus2")["OpenAI.ProvisionedManaged.gpt-4o"]
    assert provisioned["name"]["localizedValue"] == "Provisioned Managed Throughput Unit - GPT-4o"

    first, second = sub.account(), sub.account()
    assert sub.deploy(first, "chat", 100).status_code == 201
    assert sub.deploy(second, "chat", 50).status_code == 201
    assert sub.deploy(second, "global", 7, sku="GlobalStandard").status_code == 201
    assert sub.deploy(sub.account("westus"), "chat", 30).status_code == 201
    resp = sub.server.arm("GET", f"{sub.base}/{PROVIDER}/locations/eastus/usages")
    assert '"currentValue":150.0,"limit":450.0,"unit":"Count"' in resp.text.replace(" ", "")  # floats, as Azure
    usages = sub.usages()
    assert usages["OpenAI.Standard.gpt-4o-mini"]["currentValue"] == 150.0
    assert usages["OpenAI.GlobalStandard.gpt-4o-mini"]["currentValue"] == 7.0
    assert usages["OpenAI.Standard.gpt-4o"]["currentValue"] == 0.0
    assert sub.usages("westus")["OpenAI.Standard.gpt-4o-mini"]["currentValue"] == 30.0
    # the account's usages are its location's
    assert sub.server.arm("GET", f"{first}/usages").json() == resp.json()
    # the demo's deployments live on the default subscription, not here
    demo = sub.server.arm("GET", f"/subscriptions/{DEFAULT_SUBSCRIPTION}/{PROVIDER}/locations/eastus/usages").json()
    mini = [u for u in demo["value"] if u["name"]["value"] == "OpenAI.Standard.gpt-4o-mini"]
    assert mini and mini[0]["currentValue"] >= 50.0


def test_insufficient_quota_on_create(sub):
    account = sub.account()
    assert sub.deploy(account, "big", 400).status_code == 201
    expect_insufficient(sub.deploy(account, "more", 100), insufficient(100, 50, 400, 450))
    assert sub.server.arm("GET", f"{account}/deployments/more").status_code == 404
    # another account in the same subscription and region draws on the same quota
    expect_insufficient(sub.deploy(sub.account(), "more", 51), insufficient(51, 50, 400, 450))
    assert sub.deploy(account, "rest", 50).status_code == 201  # exactly what is left
    expect_insufficient(sub.deploy(account, "one", 1), insufficient(1, 0, 450, 450))
    # a model not offered with this SKU here has no quota at all: the SKU check answers first
    assert sub.deploy(account, "x1", 1, model="gpt-4.1").json()["error"]["code"] == "InvalidResourceProperties"


def test_insufficient_quota_on_scale_up_and_scale_down_allowed(sub):
    account = sub.account()
    assert sub.deploy(account, "chat", 400).status_code == 201
    expect_insufficient(sub.deploy(account, "chat", 460), insufficient(60, 50, 400, 450))
    assert sub.server.arm("GET", f"{account}/deployments/chat").json()["sku"]["capacity"] == 400
    patch = sub.server.arm("PATCH", f"{account}/deployments/chat", {"sku": {"capacity": 451}})
    expect_insufficient(patch, insufficient(51, 50, 400, 450))
    assert sub.deploy(account, "chat", 450).status_code == 200  # this deployment's own 400 counts as held
    assert sub.deploy(account, "chat", 450).status_code == 200  # unchanged capacity: nothing new asked
    assert sub.deploy(account, "chat", 10).status_code == 200  # scaling down is always allowed
    assert sub.usages()["OpenAI.Standard.gpt-4o-mini"]["currentValue"] == 10.0
    # moving a deployment to another SKU asks the other quota for all of it
    assert sub.deploy(account, "chat", 2001, sku="GlobalStandard").json()["error"]["message"].startswith(
        "This operation require 2001 new capacity in quota Tokens Per Minute (thousands) - gpt-4o-mini - "
        "GlobalStandard, which is bigger than the current available capacity 2000.")


def test_delete_frees_capacity(sub):
    account = sub.account()
    assert sub.deploy(account, "chat", 450).status_code == 201
    expect_insufficient(sub.deploy(account, "next", 1), insufficient(1, 0, 450, 450))
    assert sub.server.arm("DELETE", f"{account}/deployments/chat").status_code == 200
    assert sub.deploy(account, "next", 450).status_code == 201
    # deleting the account frees its deployments' capacity too
    assert sub.server.arm("DELETE", account).status_code == 200
    assert sub.usages()["OpenAI.Standard.gpt-4o-mini"]["currentValue"] == 0.0
    assert sub.deploy(sub.account(), "again", 450).status_code == 201


def test_concurrent_creates_never_exceed_the_quota(sub):
    account = sub.account()
    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(lambda i: sub.deploy(account, f"d{i}", 100).status_code, range(8)))
    assert sorted(results) == [201] * 4 + [400] * 4
    assert sub.usages()["OpenAI.Standard.gpt-4o-mini"]["currentValue"] == 400.0


def test_quota_request_approved_raises_the_limit(sub):
    resp = sub.file(600)
    assert resp.status_code == 201, resp.text
    req = resp.json()
    rid = req["name"]
    assert req["id"] == f"{sub.base}/{PROVIDER}/quotaRequests/{rid}"
    assert req["type"] == "Microsoft.CognitiveServices/quotaRequests"
    props = req["properties"]
    assert props["name"] == {"value": "OpenAI.Standard.gpt-4o-mini", "localizedValue": MINI}
    assert (props["location"], props["model"], props["sku"]) == ("eastus", "gpt-4o-mini", "Standard")
    assert (props["requestedLimit"], props["previousLimit"], props["state"]) == (600, 450, "Pending")
    assert props["createdAt"] and props["decidedAt"] is None and props["decidedBy"] is None
    assert [r["name"] for r in sub.server.arm("GET", f"{sub.base}/{PROVIDER}/quotaRequests").json()["value"]] == [rid]
    assert sub.server.arm("GET", f"{sub.base}/{PROVIDER}/quotaRequests/{rid}").json() == req
    # another subscription cannot see it
    other = Sub(sub.server)
    missing = sub.server.arm("GET", f"{other.base}/{PROVIDER}/quotaRequests/{rid}")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "NotFound"
    assert sub.server.arm("GET", f"{other.base}/{PROVIDER}/quotaRequests").json() == {"value": []}
    # pending: nothing changes yet
    account = sub.account()
    expect_insufficient(sub.deploy(account, "chat", 600), insufficient(600, 450, 0, 450))

    listed = admin(sub.server, "GET", "quotaRequests").json()["value"]
    assert rid in {r["name"] for r in listed}
    approved = admin(sub.server, "POST", f"quotaRequests/{rid}/approve")
    assert approved.status_code == 200, approved.text
    props = approved.json()["properties"]
    assert props["state"] == "Approved" and props["decidedBy"] == "admin@lapis.local" and props["decidedAt"]
    assert sub.usages()["OpenAI.Standard.gpt-4o-mini"]["limit"] == 600.0
    assert other.usages()["OpenAI.Standard.gpt-4o-mini"]["limit"] == 450.0  # per subscription
    assert sub.deploy(account, "chat", 600).status_code == 201
    expect_insufficient(sub.deploy(account, "chat2", 1), insufficient(1, 0, 600, 600))
    shown = sub.server.arm("GET", f"{sub.base}/{PROVIDER}/quotaRequests/{rid}").json()["properties"]
    assert shown["state"] == "Approved"

    again = admin(sub.server, "POST", f"quotaRequests/{rid}/approve")
    assert again.status_code == 409 and again.json()["error"]["code"] == "QuotaRequestNotPending"
    unknown = admin(sub.server, "POST", f"quotaRequests/{uuid.uuid4()}/approve")
    assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "NotFound"


def test_quota_request_rejected_with_a_reason(sub):
    rid = sub.file(1000, model="gpt-4o", sku="GlobalStandard").json()["name"]
    no_reason = admin(sub.server, "POST", f"quotaRequests/{rid}/reject", {})
    assert no_reason.status_code == 400
    rejected = admin(sub.server, "POST", f"quotaRequests/{rid}/reject", {"reason": "Region is full."})
    assert rejected.status_code == 200, rejected.text
    props = rejected.json()["properties"]
    assert (props["state"], props["reason"], props["decidedBy"]) == ("Rejected", "Region is full.",
                                                                     "admin@lapis.local")
    assert sub.usages()["OpenAI.GlobalStandard.gpt-4o"]["limit"] == 450.0
    assert sub.server.arm("GET", f"{sub.base}/{PROVIDER}/quotaRequests/{rid}").json()["properties"]["reason"] == (
        "Region is full.")
    late = admin(sub.server, "POST", f"quotaRequests/{rid}/approve")
    assert late.status_code == 409


def test_quota_request_must_ask_for_more(sub):
    for limit in (450, 10):
        resp = sub.file(limit)
        assert resp.status_code == 400
        assert resp.content == (
            b'{"error":{"code":"InvalidQuotaRequest","message":"The requested limit ' + str(limit).encode() +
            b' for quota Tokens Per Minute (thousands) - GPT-4o-Mini is not above the current limit 450. A quota '
            b'increase request must ask for more than the current limit."}}')
    for body_limit, model, sku, location in ((0, "gpt-4o-mini", "Standard", "eastus"),
                                             ("many", "gpt-4o-mini", "Standard", "eastus"),
                                             (500, "gpt-4.1", "Standard", "eastus"),
                                             (500, "gpt-4o-mini", "Premium", "eastus"),
                                             (500, "gpt-4o-mini", "Standard", "moon")):
        resp = sub.file(body_limit, model, sku, location)
        assert resp.status_code == 400 and resp.json()["error"]["code"] == "InvalidQuotaRequest", resp.text
    assert sub.server.arm("GET", f"{sub.base}/{PROVIDER}/quotaRequests").json() == {"value": []}
