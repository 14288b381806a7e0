"""Budgets against a real server process: a notification made with the CLI reaches an
aiohttp webhook on 127.0.0.1 once, and not again after more spend or a restart;
a hard cap turns the account's data plane into 429 BudgetExceeded (raw HTTP and
the openai client), survives a restart, and lifts when the budget clock
(LAPIS_BUDGET_CLOCK_OFFSET_S, for tests) passes the period boundary."""

from __future__ import annotations

import asyncio
import json
import re
import time
from datetime import datetime, timezone
from pathlib import Path

import openai
import pytest
import requests

from support.cli import Cli
from support.log_receivers import Receiver, until
from support.server import DEFAULT_SUBSCRIPTION, LapisProcess, start_server

API = "2023-05-01"
GROUP = f"/subscriptions/{DEFAULT_SUBSCRIPTION}/resourceGroups/lapis-demo"
ACCOUNT = f"{GROUP}/providers/Microsoft.CognitiveServices/accounts/lapis-demo"
FAST = {"LAPIS_BUDGET_INTERVAL_S": "0.3"}


@pytest.fixture()
def server(tmp_path: Path) -> LapisProcess:
    lapis = start_server(tmp_path / "home", demo=True, **FAST)
    yield lapis
    lapis.stop()


def chat(lapis: LapisProcess, env: dict[str, str]) -> requests.Response:
    url = f"{env['AZURE_OPENAI_ENDPOINT']}/openai/deployments/gpt-4o-mini/chat/completions"
    return requests.post(url, params={"api-version": "2024-10-21"}, headers={"api-key": env["AZURE_OPENAI_KEY"]},
                         json={"messages": [{"role": "user", "content": "Count the budget, please."}]}, timeout=30)


def evaluations(lapis: LapisProcess) -> float:
    text = requests.get(f"{lapis.url}/metrics", timeout=10).text
    return float(re.search(r"^lapis_budget_evaluations_total (\S+)$", text, re.M).group(1))


async def two_more_evaluations(lapis: LapisProcess) -> None:
    seen = await asyncio.to_thread(evaluations, lapis)
    for _ in range(200):
        if await asyncio.to_thread(evaluations, lapis) >= seen + 2:
            return
        await asyncio.sleep(0.1)
    raise AssertionError("the budget evaluator stopped evaluating")


def first_of_next_month(now: datetime) -> datetime:
    return datetime(now.year + now.month // 12, now.month % 12 + 1, 1, tzinfo=timezone.utc)


async def test_a_notification_fires_once_at_its_threshold(server: LapisProcess, tmp_path: Path):
    receiver = await Receiver().start()
    try:
        env = await asyncio.to_thread(server.demo_env)
        cli = Cli(server.home, tmp_path / "cli")
        made = await asyncio.to_thread(cli.json, "consumption", "budget", "create", "--budget-name", "team",
                                       "-g", "lapis-demo", "--amount", "0.00002",
                                       "--notification", f"100%:webhook={receiver.url},email=ops@contoso.com")
        assert made["properties"]["notifications"]["Actual_GreaterThan_100_Percent"]["webhookUrl"] == receiver.url
        await two_more_evaluations(server)
        assert receiver.bodies == []  # nothing spent yet
        for _ in range(100):
            assert (await asyncio.to_thread(chat, server, env)).status_code == 200
            await asyncio.sleep(0.05)
            if receiver.bodies:
                break
        await until(lambda: receiver.bodies, message="the notification never came")
        sent = receiver.bodies[0]
        assert sent["budgetName"] == "team" and sent["scope"] == GROUP
        assert sent["notification"]["threshold"] == 100 and sent["notification"]["contactEmails"] == \
            ["ops@contoso.com"]
        assert sent["currentSpend"]["amount"] > 0.00002 and sent["spentPercent"] > 100
        assert sent["period"]["startDate"] == datetime.now(timezone.utc).strftime("%Y-%m-01T00:00:00Z")

        for _ in range(3):  # more spend, more evaluations: still the one notification
            assert (await asyncio.to_thread(chat, server, env)).status_code == 200
        await two_more_evaluations(server)
        await asyncio.to_thread(server.stop)
        await asyncio.to_thread(server.start)
        await two_more_evaluations(server)
        assert len(receiver.bodies) == 1
        listed = await asyncio.to_thread(cli.json, "consumption", "budget", "list", "-g", "lapis-demo")
        assert [b["name"] for b in listed] == ["team"]
        assert listed[0]["properties"]["currentSpend"]["amount"] >= sent["currentSpend"]["amount"]
        await asyncio.to_thread(cli, "consumption", "budget", "delete", "--budget-name", "team", "-g", "lapis-demo")
        assert await asyncio.to_thread(cli.json, "consumption", "budget", "list", "-g", "lapis-demo") == []
    finally:
        await receiver.stop()


def budget_path(scope: str, name: str) -> str:
    return f"{scope}/providers/Microsoft.Consumption/budgets/{name}"


def test_the_hard_cap_blocks_then_lifts_at_the_period_boundary(server: LapisProcess):
    start = datetime.now(timezone.utc).strftime("%Y-%m-01T00:00:00Z")
    body = {"properties": {"category": "Cost", "amount": 0.00002, "timeGrain": "Monthly",
                           "timePeriod": {"startDate": start}, "hardCap": True}}
    made = server.arm("PUT", budget_path(ACCOUNT, "cap"), body, api_version=API)
    assert made.status_code == 201, made.text
    assert made.json()["properties"]["hardCap"] is True
    env = server.demo_env()
    refused = None
    for _ in range(100):
        answer = chat(server, env)
        if answer.status_code == 429:
            refused = answer
            break
        assert answer.status_code == 200, answer.text
        time.sleep(0.05)
    assert refused is not None, "the hard cap never blocked"
    now = time.time()
    reset = first_of_next_month(datetime.now(timezone.utc))
    error = refused.json()["error"]
    assert error["code"] == "BudgetExceeded"
    assert f"The budget 'cap' of {ACCOUNT} is spent:" in error["message"]
    assert f"resets at {reset.strftime('%Y-%m-%dT%H:%M:%SZ')}" in error["message"]
    retry_after = int(refused.headers["retry-after"])
    assert abs(retry_after - (reset.timestamp() - now)) < 120
    assert refused.headers["retry-after-ms"] == str(retry_after * 1000)
    assert refused.headers["apim-request-id"]

    client = openai.AzureOpenAI(azure_endpoint=env["AZURE_OPENAI_ENDPOINT"], api_key=env["AZURE_OPENAI_KEY"],
                                api_version="2024-10-21", max_retries=0)
    with pytest.raises(openai.RateLimitError) as caught:
        client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
    assert caught.value.code == "BudgetExceeded"

    server.stop()
    server.start()  # the store remembers: blocked from the first request
    assert chat(server, env).status_code == 429

    server.stop()
    server.env["LAPIS_BUDGET_CLOCK_OFFSET_S"] = str(retry_after + 5)  # the budget clock in the next period
    server.start()
    assert chat(server, env).status_code == 200
    shown = server.arm("GET", budget_path(ACCOUNT, "cap"), api_version=API).json()
    assert shown["properties"]["timePeriod"]["startDate"] == start
    assert shown["properties"]["currentSpend"]["amount"] < 0.00002


def test_arm_answers_and_refusals(server: LapisProcess):
    start = datetime.now(timezone.utc).strftime("%Y-%m-01T00:00:00Z")
    path = budget_path(f"/subscriptions/{DEFAULT_SUBSCRIPTION}", "monthly")
    body = {"properties": {"category": "Cost", "amount": 100, "timeGrain": "Monthly",
                           "timePeriod": {"startDate": start}}}
    created = server.arm("PUT", path, body, api_version=API)
    assert created.status_code == 201
    budget = created.json()
    assert budget["id"] == path.lstrip("/") and budget["type"] == "Microsoft.Consumption/budgets"
    assert budget["properties"]["currentSpend"] == {"amount": 0, "unit": "USD"}
    replaced = server.arm("PUT", path.replace("budgets", "BUDGETS"), {**body, "eTag": budget["eTag"]},
                          api_version=API)
    assert replaced.status_code == 200 and replaced.json()["eTag"] != budget["eTag"]
    stale = server.arm("PUT", path, {**body, "eTag": budget["eTag"]}, api_version=API)
    assert stale.status_code == 400
    assert stale.json()["error"]["code"] == "400"
    assert stale.json()["error"]["message"].startswith("There are changes made to Budget monthly. Please get the "
                                                       "latest budget to avoid overwrite. (Request ID: ")
    moved = {"properties": {**body["properties"], "timePeriod": {"startDate": "2017-06-01T00:00:00Z"}}}
    assert "Start date of budgets cannot be updated" in server.arm("PUT", path, moved, api_version=API).text
    bad = server.arm("PUT", budget_path(GROUP, "b"), {"properties": {**body["properties"], "amount": -1}},
                     api_version=API)
    assert bad.status_code == 400 and "The amount must be greater than 0" in bad.json()["error"]["message"]
    missing_group = server.arm("PUT", budget_path(f"/subscriptions/{DEFAULT_SUBSCRIPTION}/resourceGroups/nope", "b"),
                               body, api_version=API)
    assert missing_group.status_code == 404 and missing_group.json()["error"]["code"] == "ResourceGroupNotFound"
    unknown = server.arm("GET", budget_path(GROUP, "none"), api_version=API)
    assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "404"
    listed = server.arm("GET", f"/subscriptions/{DEFAULT_SUBSCRIPTION}/providers/Microsoft.Consumption/budgets",
                        api_version=API).json()
    assert [b["name"] for b in listed["value"]] == ["monthly"]
    assert server.arm("DELETE", path, api_version=API).status_code == 200
    assert server.arm("DELETE", path, api_version=API).status_code == 204
    assert json.loads(server.arm("GET", path, api_version=API).text)["error"]["code"] == "404"
