"""The `lapis` CLI against a real server, run as a subprocess from a folder
that is not the repository: the walkthrough of azure-openai-setup.md with
`az` replaced by `lapis`, the access gates, output formats, how the CLI finds
its server, and the errors a user sees (az's form, exit 1, no traceback)."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest
import requests

from lapis.cli.main import expand_multi_values
from lapis.cli.output import QueryError, query, render
from support.cli import Cli
from support.server import DEFAULT_SUBSCRIPTION

DATA_PLANE_VERSION = "2024-10-21"
NEW_SUBSCRIPTION = "5a1e5a1e-0000-4000-8000-00000000c11e"


@pytest.fixture()
def cli(fresh_server, tmp_path: Path) -> Cli:
    return Cli(fresh_server.home, tmp_path / "somewhere-else")


def unique(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:8]}"


def chat(endpoint: str, deployment: str, key: str) -> requests.Response:
    return requests.post(f"{endpoint}/openai/deployments/{deployment}/chat/completions?api-version="
                         f"{DATA_PLANE_VERSION}", headers={"api-key": key},
                         json={"messages": [{"role": "user", "content": "hello"}], "max_tokens": 5}, timeout=30)


# -- the access gates on a new subscription ------------------------------------

def test_new_subscription_needs_registration_then_approval(cli):
    created = cli.json("admin", "subscription", "create", "--name", "CLI walkthrough",
                       "--subscription-id", NEW_SUBSCRIPTION)
    assert created["subscriptionId"] == NEW_SUBSCRIPTION and created["openAIApproved"] is False
    sub = ("--subscription", NEW_SUBSCRIPTION)
    assert cli.json("group", "create", "--name", "rg1", "--location", "eastus", *sub)["name"] == "rg1"
    create = ("cognitiveservices", "account", "create", "--name", "gated", "--resource-group", "rg1",
              "--kind", "OpenAI", "--sku", "S0", "--location", "eastus", "--custom-domain", "gated", "--yes", *sub)

    cli.fails("MissingSubscriptionRegistration", *create)
    assert cli("provider", "register", "--namespace", "Microsoft.CognitiveServices", *sub).stdout == ""
    shown = cli.json("provider", "show", "--namespace", "Microsoft.CognitiveServices", *sub)
    assert shown["registrationState"] == "Registered"

    cli.fails("SpecialFeatureOrQuotaIdRequired", *create)
    approved = cli.json("admin", "approve-subscription", "--subscription", NEW_SUBSCRIPTION)
    assert approved["openAIApproved"] is True
    account = cli.json(*create)
    assert account["properties"]["provisioningState"] == "Succeeded"
    assert account["id"].startswith(f"/subscriptions/{NEW_SUBSCRIPTION}/resourceGroups/rg1/")

    # the display name works as well as the id, as in az
    assert cli.json("admin", "revoke-subscription", "--subscription", "CLI walkthrough")["openAIApproved"] is False
    cli.fails("SpecialFeatureOrQuotaIdRequired", "cognitiveservices", "account", "create", "-n", "second",
              "-g", "rg1", "--kind", "OpenAI", "--sku", "S0", "-l", "eastus", "--subscription", "cli WALKTHROUGH")

    listed = cli.json("account", "list")
    assert {s["id"] for s in listed} == {DEFAULT_SUBSCRIPTION, NEW_SUBSCRIPTION}
    assert [s["isDefault"] for s in listed if s["id"] == DEFAULT_SUBSCRIPTION] == [True]
    assert cli.json("account", "show", *sub)["name"] == "CLI walkthrough"


# -- the guide, command for command --------------------------------------------

def test_guide_walkthrough(cli, fresh_server):
    resource, group = "contoso-aoai", "rg-guide"
    # Prerequisites and Step 1, as the guide writes them (az -> lapis)
    cli("provider", "register", "--namespace", "Microsoft.CognitiveServices")
    cli("group", "create", "--name", group, "--location", "eastus", "--tags", "team=ai", "cost=42")
    assert cli.json("group", "show", "--name", group)["tags"] == {"team": "ai", "cost": "42"}
    account = cli.json("cognitiveservices", "account", "create",
                       "--name", resource,
                       "--resource-group", group,
                       "--kind", "OpenAI",
                       "--sku", "S0",
                       "--location", "eastus",
                       "--custom-domain", resource,
                       "--yes")
    assert account["name"] == resource and account["kind"] == "OpenAI" and account["sku"] == {"name": "S0"}
    assert account["resourceGroup"] == group  # added from the id, as az does
    assert account["properties"]["customSubDomainName"] == resource
    assert account["properties"]["publicNetworkAccess"] == "Enabled"
    endpoint = account["properties"]["endpoint"].rstrip("/")
    assert endpoint == f"{fresh_server.url}/accounts/{resource}"

    acct = ("--name", resource, "--resource-group", group)
    assert cli.json("cognitiveservices", "account", "show", *acct)["id"] == account["id"]
    assert [a["name"] for a in cli.json("cognitiveservices", "account", "list")] == [resource]
    in_group = cli.json("cognitiveservices", "account", "list", "--resource-group", group)
    assert [a["name"] for a in in_group] == [resource]

    # Step 2, as written
    deployment = cli.json("cognitiveservices", "account", "deployment", "create",
                          "--resource-group", group,
                          "--name", resource,
                          "--deployment-name", "prod-gpt4o-mini",
                          "--model-name", "gpt-4o-mini",
                          "--model-format", "OpenAI",
                          "--sku-name", "Standard",
                          "--capacity", "50")
    assert deployment["name"] == "prod-gpt4o-mini"
    assert deployment["sku"] == {"name": "Standard", "capacity": 50}
    assert deployment["properties"]["model"] == {"callRateLimit": None, "format": "OpenAI", "name": "gpt-4o-mini",
                                                 "source": None, "version": "2024-07-18"}  # the catalogue default
    # newer az spells it --sku-capacity; short flags as az's
    second = cli.json("cognitiveservices", "account", "deployment", "create", "-g", group, "-n", resource,
                      "--deployment-name", "pinned", "--model-name", "gpt-4o-mini", "--model-format", "OpenAI",
                      "--model-version", "2024-07-18", "--sku-name", "Standard", "--sku-capacity", "7")
    assert second["sku"]["capacity"] == 7
    # a SKU the model does not offer in the account's region
    cli.fails("InvalidResourceProperties", "cognitiveservices", "account", "deployment", "create", *acct,
              "--deployment-name", "big", "--model-name", "gpt-4.1", "--model-format", "OpenAI",
              "--sku-name", "Standard", "--capacity", "10")

    dep = ("cognitiveservices", "account", "deployment")
    assert sorted(d["name"] for d in cli.json(*dep, "list", *acct)) == ["pinned", "prod-gpt4o-mini"]
    shown = cli.json(*dep, "show", *acct, "--deployment-name", "prod-gpt4o-mini")
    assert shown["id"] == deployment["id"]

    # Step 3: keys; the data plane follows a regenerated key at once
    keys = cli.json("cognitiveservices", "account", "keys", "list", *acct)
    assert set(keys) == {"key1", "key2"}
    assert chat(endpoint, "prod-gpt4o-mini", keys["key1"]).status_code == 200
    new = cli.json("cognitiveservices", "account", "keys", "regenerate", *acct, "--key-name", "key1")
    assert new["key1"] != keys["key1"] and new["key2"] == keys["key2"]
    assert chat(endpoint, "prod-gpt4o-mini", keys["key1"]).status_code == 401
    assert chat(endpoint, "prod-gpt4o-mini", new["key1"]).status_code == 200
    assert chat(endpoint, "prod-gpt4o-mini", keys["key2"]).status_code == 200
    again = cli.json("cognitiveservices", "account", "keys", "regenerate", *acct, "--key-name", "key2")
    assert again["key1"] == new["key1"] and again["key2"] != keys["key2"]

    # update: tags and public network access (PATCH)
    updated = cli.json("cognitiveservices", "account", "update", *acct, "--tags", "env=dev", "owner=me",
                       "--public-network-access", "Disabled")
    assert updated["tags"] == {"env": "dev", "owner": "me"}
    assert updated["properties"]["publicNetworkAccess"] == "Disabled"
    assert updated["properties"]["customSubDomainName"] == resource
    assert chat(endpoint, "prod-gpt4o-mini", again["key1"]).status_code == 403
    shown = cli.json("cognitiveservices", "account", "show", *acct)
    assert shown["tags"] == {"env": "dev", "owner": "me"} and shown["properties"]["publicNetworkAccess"] == "Disabled"

    # delete prints nothing; what is gone fails as Azure fails
    assert cli(*dep, "delete", *acct, "--deployment-name", "prod-gpt4o-mini").stdout == ""
    assert [d["name"] for d in cli.json(*dep, "list", *acct)] == ["pinned"]
    cli.fails("NotFound", *dep, "show", *acct, "--deployment-name", "prod-gpt4o-mini")
    assert cli("cognitiveservices", "account", "delete", *acct).stdout == ""
    cli.fails("ResourceNotFound", "cognitiveservices", "account", "show", *acct)
    assert cli.json("cognitiveservices", "account", "list") == []
    cli("group", "delete", "--name", group, expect=1)  # no tty, no --yes: refuses, as az does
    assert cli("group", "delete", "--name", group, "--yes").stdout == ""
    cli.fails("ResourceGroupNotFound", "group", "show", "--name", group)


def test_models_and_table_output(cli, fresh_server):
    cli("provider", "register", "--namespace", "Microsoft.CognitiveServices")
    cli("group", "create", "-n", "rg1", "-l", "eastus")
    cli("cognitiveservices", "account", "create", "-n", "models", "-g", "rg1", "--kind", "OpenAI", "--sku", "S0",
        "-l", "eastus")

    account_models = cli.json("cognitiveservices", "account", "list-models", "--name", "models",
                              "--resource-group", "rg1")
    assert isinstance(account_models, list)
    mini = [m for m in account_models if m["name"] == "gpt-4o-mini"]
    assert mini and any(m["isDefaultVersion"] and m["version"] == "2024-07-18" for m in mini)
    location_models = cli.json("cognitiveservices", "model", "list", "--location", "eastus")
    assert isinstance(location_models, list)
    assert "gpt-4o-mini" in {m["model"]["name"] for m in location_models}

    table = cli("cognitiveservices", "account", "list", "-o", "table").stdout.splitlines()
    assert table[0].split() == ["Kind", "Location", "Name", "ResourceGroup"]
    assert set(table[1].replace(" ", "")) == {"-"}
    assert table[2].split() == ["OpenAI", "eastus", "models", "rg1"]
    groups = cli("group", "list", "--output", "table").stdout.splitlines()
    assert groups[0].split() == ["Name", "Location", "Status"] and groups[2].split() == ["rg1", "eastus", "Succeeded"]
    models = cli("cognitiveservices", "model", "list", "-l", "eastus", "-o", "table").stdout.splitlines()
    assert models[0].split()[:2] == ["Name", "Version"] and any(r.startswith("gpt-4o-mini ") for r in models)

    endpoint = cli("cognitiveservices", "account", "show", "-n", "models", "-g", "rg1",
                   "--query", "properties.endpoint", "-o", "tsv").stdout.strip()
    assert endpoint == f"{fresh_server.url}/regions/eastus/"  # no custom domain: the regional endpoint
    assert cli("group", "list", "--query", "[].name", "-o", "tsv").stdout.split() == ["rg1"]


# -- finding the server, and failing cleanly --------------------------------------

def test_lapis_url_overrides_the_server_file(fresh_server, tmp_path: Path):
    home = tmp_path / "other-home"
    home.mkdir()
    (home / "server.json").write_text(json.dumps({"url": "http://127.0.0.1:9", "admin_token": fresh_server.admin_token,
                                                  "pid": 1}))
    stale = Cli(home, tmp_path / "cwd")
    done = stale("group", "list", expect=1)
    assert "http://127.0.0.1:9" in done.stderr and "lapis serve" in done.stderr

    overridden = Cli(home, tmp_path / "cwd", LAPIS_URL=fresh_server.url)
    assert overridden.json("group", "list") == []
    assert DEFAULT_SUBSCRIPTION in {s["id"] for s in overridden.json("account", "list")}


def test_stopped_server_gives_a_clean_error(fresh_server, cli):
    assert cli.json("account", "show")["id"] == DEFAULT_SUBSCRIPTION
    fresh_server.stop()
    done = cli("group", "list", expect=1)
    assert done.stdout == ""
    assert fresh_server.url in done.stderr and "lapis serve" in done.stderr and "make run" in done.stderr


def test_no_server_file(tmp_path: Path):
    done = Cli(tmp_path / "empty-home", tmp_path / "cwd")("cognitiveservices", "account", "list", expect=1)
    assert "server.json" in done.stderr and "lapis serve" in done.stderr


def test_bad_credential_is_an_arm_error(fresh_server, tmp_path: Path):
    home = tmp_path / "wrong-token"
    home.mkdir()
    (home / "server.json").write_text(json.dumps({"url": fresh_server.url, "admin_token": "nope", "pid": 1}))
    Cli(home, tmp_path / "cwd").fails("InvalidAuthenticationToken", "group", "list")


def test_usage_errors_exit_2(cli):
    done = cli("cognitiveservices", "account", "keys", "regenerate", "-n", "a", "-g", "b", "--key-name", "key3",
               expect=2)
    assert "key1" in done.stderr
    cli("group", "list", "--query", "{name: name}", expect=2)
    cli("group", "create", "--name", "x", expect=2)  # --location missing


# -- pieces without a server ------------------------------------------------------

def test_tags_take_several_values_like_az():
    assert expand_multi_values(["group", "create", "--tags", "a=1", "b=2", "-l", "eastus"]) == [
        "group", "create", "--tags", "a=1", "--tags", "b=2", "-l", "eastus"]
    assert expand_multi_values(["--tags", "", "--name", "x"]) == ["--tags", "", "--name", "x"]


def test_query_subset():
    data = {"properties": {"endpoint": "e"}, "list": [{"name": "a"}, {"name": "b"}, {}]}
    assert query(data, "properties.endpoint") == "e"
    assert query(data["list"], "[].name") == ["a", "b"]
    assert query(data, "list[1].name") == "b"
    assert query(data, "missing.key") is None
    with pytest.raises(QueryError):
        query(data, "list[?name=='a']")
    assert render([], "table") is None
    assert render({"key1": "k1", "key2": "k2"}, "tsv") == "k1\tk2"
