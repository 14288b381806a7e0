"""Quota through the `lapis` CLI, run as a subprocess against a real server:
InsufficientQuota on create and on scale-up (`deployment create` again with a
larger --capacity), capacity freed by delete, `cognitiveservices usage list`,
and a quota increase request from filing to approval or rejection."""

from __future__ import annotations

from pathlib import Path

import pytest

from support.cli import Cli

SUB = "9a0e7a00-0000-4000-8000-00000000c0de"
MINI = "Tokens Per Minute (thousands) - GPT-4o-Mini"


def insufficient(required: int, available: int, usage: int, limit: int) -> str:
    return (f"This operation require {required} new capacity in quota {MINI}, which is bigger than the current "
            f"available capacity {available}. The current quota usage is {usage} and the quota limit is {limit} "
            f"for quota {MINI}.")


@pytest.fixture()
def cli(fresh_server, tmp_path: Path) -> Cli:
    cli = Cli(fresh_server.home, tmp_path / "elsewhere")
    cli("admin", "subscription", "create", "--name", "quota", "--subscription-id", SUB, "--approved")
    cli("provider", "register", "--namespace", "Microsoft.CognitiveServices", "--subscription", SUB)
    cli("group", "create", "-n", "rg", "-l", "eastus", "--subscription", SUB)
    cli("cognitiveservices", "account", "create", "-n", "acct", "-g", "rg", "--kind", "OpenAI", "--sku", "S0",
        "-l", "eastus", "--subscription", SUB)
    return cli


def deploy(cli: Cli, name: str, capacity: int, expect: str | None = None) -> object:
    args = ("cognitiveservices", "account", "deployment", "create", "-g", "rg", "-n", "acct", "--deployment-name",
            name, "--model-name", "gpt-4o-mini", "--model-format", "OpenAI", "--sku-name", "Standard",
            "--capacity", str(capacity), "--subscription", SUB)
    return cli.fails(expect, *args) if expect else cli.json(*args)


def mini_usage(cli: Cli) -> dict:
    usages = cli.json("cognitiveservices", "usage", "list", "--location", "eastus", "--subscription", SUB)
    assert isinstance(usages, list)
    return next(u for u in usages if u["name"]["value"] == "OpenAI.Standard.gpt-4o-mini")


def test_insufficient_quota_on_create_scale_up_and_freed_by_delete(cli):
    assert mini_usage(cli) == {"currentValue": 0.0, "limit": 450.0, "unit": "Count",
                               "name": {"value": "OpenAI.Standard.gpt-4o-mini", "localizedValue": MINI}}
    assert deploy(cli, "chat", 400)["sku"] == {"name": "Standard", "capacity": 400}

    # create past the quota
    assert deploy(cli, "more", 100, expect="InsufficientQuota") == insufficient(100, 50, 400, 450)
    # scale up past it: `deployment create` again with a larger capacity
    assert deploy(cli, "chat", 460, expect="InsufficientQuota") == insufficient(60, 50, 400, 450)
    shown = cli.json("cognitiveservices", "account", "deployment", "show", "-g", "rg", "-n", "acct",
                     "--deployment-name", "chat", "--subscription", SUB)
    assert shown["sku"]["capacity"] == 400
    assert deploy(cli, "chat", 450)["sku"]["capacity"] == 450  # up to the limit is fine
    assert mini_usage(cli)["currentValue"] == 450.0

    # delete frees the capacity
    cli("cognitiveservices", "account", "deployment", "delete", "-g", "rg", "-n", "acct", "--deployment-name", "chat",
        "--subscription", SUB)
    assert mini_usage(cli)["currentValue"] == 0.0
    assert deploy(cli, "more", 100)["sku"]["capacity"] == 100

    table = cli("cognitiveservices", "usage", "list", "-l", "eastus", "--subscription", SUB, "-o", "table")
    lines = table.stdout.splitlines()
    assert lines[0].split() == ["Name", "CurrentValue", "Limit"]
    assert "OpenAI.Standard.gpt-4o-mini 100.0 450.0".split() in [line.split() for line in lines[2:]]


def test_quota_request_flow(cli):
    sub = ("--subscription", SUB)
    created = cli.json("quota", "request", "create", "--location", "eastus", "--model", "gpt-4o-mini",
                       "--sku", "Standard", "--limit", "600", *sub)
    rid = created["name"]
    assert created["properties"]["state"] == "Pending"
    assert (created["properties"]["previousLimit"], created["properties"]["requestedLimit"]) == (450, 600)
    assert [r["name"] for r in cli.json("quota", "request", "list", *sub)] == [rid]
    assert cli.json("quota", "request", "show", "--id", rid, *sub)["properties"]["state"] == "Pending"
    listed = cli("quota", "request", "list", "-o", "table", *sub).stdout.splitlines()
    assert listed[0].split() == ["Name", "Location", "Model", "Sku", "PreviousLimit", "RequestedLimit", "State"]
    assert listed[2].split() == [rid, "eastus", "gpt-4o-mini", "Standard", "450", "600", "Pending"]

    # a limit that is not higher is refused at filing
    cli.fails("InvalidQuotaRequest", "quota", "request", "create", "-l", "eastus", "--model", "gpt-4o-mini",
              "--sku", "Standard", "--limit", "450", *sub)
    assert deploy(cli, "big", 600, expect="InsufficientQuota") == insufficient(600, 450, 0, 450)

    admin_list = cli.json("admin", "quota-request", "list")
    assert [(r["name"], r["properties"]["subscriptionId"]) for r in admin_list] == [(rid, SUB)]
    approved = cli.json("admin", "quota-request", "approve", "--id", rid)
    assert approved["properties"]["state"] == "Approved" and approved["properties"]["decidedBy"]
    assert mini_usage(cli)["limit"] == 600.0
    assert deploy(cli, "big", 600)["sku"]["capacity"] == 600
    cli.fails("QuotaRequestNotPending", "admin", "quota-request", "approve", "--id", rid)

    second = cli.json("quota", "request", "create", "-l", "eastus", "--model", "gpt-4o-mini", "--sku", "Standard",
                      "--limit", "900", *sub)["name"]
    rejected = cli.json("admin", "quota-request", "reject", "--id", second, "--reason", "Not this quarter.")
    assert (rejected["properties"]["state"], rejected["properties"]["reason"]) == ("Rejected", "Not this quarter.")
    shown = cli.json("quota", "request", "show", "--id", second, *sub)["properties"]
    assert (shown["state"], shown["reason"], shown["previousLimit"]) == ("Rejected", "Not this quarter.", 600)
    assert mini_usage(cli)["limit"] == 600.0
    cli.fails("NotFound", "quota", "request", "show", "--id", "00000000-0000-4000-8000-000000000000", *sub)
