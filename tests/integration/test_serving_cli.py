"""`lapis backend|pool|fault` against a real server, run as a subprocess:
create, list, show and delete for each, table output, az-style errors, and
a fault set from the CLI reaching the data plane and cleared again."""

from __future__ import annotations

from pathlib import Path

import pytest
import requests

from support.cli import Cli
from support.server import DEFAULT_SUBSCRIPTION

SECRET = "sk-cli-upstream-91c2"
ACCT = f"/subscriptions/{DEFAULT_SUBSCRIPTION}/resourceGroups/rg/providers/Microsoft.CognitiveServices/accounts/acct1"


@pytest.fixture()
def cli(fresh_server, tmp_path: Path) -> Cli:
    cli = Cli(fresh_server.home, tmp_path / "elsewhere")
    cli("provider", "register", "--namespace", "Microsoft.CognitiveServices")
    cli("group", "create", "-n", "rg", "-l", "eastus")
    cli("cognitiveservices", "account", "create", "-n", "acct1", "-g", "rg", "--kind", "OpenAI", "--sku", "S0",
        "-l", "eastus", "--custom-domain", "acct1", "--yes")
    for name in ("chat", "spare"):
        cli("cognitiveservices", "account", "deployment", "create", "-g", "rg", "-n", "acct1", "--deployment-name",
            name, "--model-name", "gpt-4o-mini", "--model-format", "OpenAI", "--sku-name", "Standard",
            "--capacity", "10")
    return cli


def test_backend_commands(cli):
    created = cli("backend", "create", "--name", "vllm-1", "--region", "eastus", "--model", "gpt-4o-mini",
                  "--kind", "openai-compatible", "--url", "http://127.0.0.1:8000/v1", "--upstream-model",
                  "qwen2.5-7b", "--api-key", SECRET, "--timeout", "20", "--weight", "2")
    assert SECRET not in created.stdout
    assert cli.json("backend", "show", "--name", "VLLM-1") == {
        "id": "vllm-1", "region": "eastus", "model": "gpt-4o-mini", "kind": "openai-compatible",
        "url": "http://127.0.0.1:8000/v1", "upstreamModel": "qwen2.5-7b", "deployment": "", "apiVersion": "",
        "auth": None, "hasSecret": True, "timeoutSeconds": 20.0, "weight": 2}
    azure = cli.json("backend", "create", "-n", "az-west", "-l", "westus", "--model", "gpt-4o", "--kind", "azure",
                     "--url", "http://127.0.0.1:9443", "--deployment", "prod", "--api-version", "2025-04-01-preview",
                     "--tenant", "t-1", "--client-id", "c-1", "--client-secret", "entra-secret",
                     "--authority", "https://login.example")
    assert azure["auth"] == {"tenant": "t-1", "clientId": "c-1", "authority": "https://login.example"}
    assert azure["apiVersion"] == "2025-04-01-preview" and azure["hasSecret"] is True

    # create again without --api-key: the secret stays
    assert cli.json("backend", "create", "--name", "vllm-1", "--region", "eastus", "--model", "gpt-4o-mini",
                    "--kind", "openai-compatible", "--url", "http://127.0.0.1:8001/v1")["hasSecret"] is True

    listed = cli("backend", "list", "-o", "table").stdout
    assert SECRET not in listed and "entra-secret" not in listed
    lines = listed.splitlines()
    assert lines[0].split() == ["Name", "Region", "Model", "Kind", "Url", "Upstream", "Weight", "HasSecret"]
    rows = [line.split() for line in lines[2:]]
    assert rows == [["vllm-1", "eastus", "gpt-4o-mini", "openai-compatible", "http://127.0.0.1:8001/v1",
                     "gpt-4o-mini", "1", "True"],
                    ["az-west", "westus", "gpt-4o", "azure", "http://127.0.0.1:9443", "prod", "1", "True"]]
    assert cli("backend", "list", "--query", "[].id", "-o", "tsv").stdout.split() == ["vllm-1", "az-west"]

    message = cli.fails("InvalidParameter", "backend", "create", "-n", "x", "-l", "eastus", "--model", "gpt-4o-mini",
                        "--kind", "openai-compatible")
    assert message == "The property 'url' is required for a backend of kind 'openai-compatible'."
    cli("backend", "delete", "--name", "az-west")
    assert cli.fails("NotFound", "backend", "show", "--name", "az-west") == \
        "Specified resource '/lapis/admin/backends/az-west' cannot be found."


def test_pool_commands(cli):
    cli("backend", "create", "-n", "engine", "-l", "eastus", "--model", "gpt-4o-mini", "--kind", "simulator")
    pool = cli.json("pool", "create", "--name", "front", "--resource-group", "rg", "--account-name", "acct1",
                    "--deployment-name", "chat")
    assert pool == {"name": "front", "subscriptionId": DEFAULT_SUBSCRIPTION, "deploymentId": f"{ACCT}/deployments/chat",
                    "members": []}
    member = cli.json("pool", "member", "add", "--pool", "front", "--name", "local", "-g", "rg", "--account-name",
                      "acct1", "--deployment-name", "spare", "--priority", "2", "--weight", "3")
    assert member == {"id": "local", "kind": "deployment", "target": f"{ACCT}/deployments/spare", "priority": 2,
                      "weight": 3, "key": "member:front/local"}
    cli("pool", "member", "add", "--pool", "front", "--name", "sim", "--backend", "engine")
    cli("pool", "member", "add", "--pool", "front", "--name", "home", "--deployment-id", f"{ACCT}/deployments/chat")

    table = cli("pool", "member", "list", "--pool", "front", "-o", "table").stdout.splitlines()
    assert table[0].split() == ["Name", "Kind", "Priority", "Weight", "Key", "Target"]
    assert [line.split()[:5] for line in table[2:]] == [
        ["home", "deployment", "1", "1", "member:front/home"], ["sim", "backend", "1", "1", "member:front/sim"],
        ["local", "deployment", "2", "3", "member:front/local"]]
    shown = cli.json("pool", "show", "--name", "front")
    assert [m["id"] for m in shown["members"]] == ["home", "sim", "local"]
    assert cli("pool", "list", "-o", "tsv").stdout.split("\t")[:3] == ["front", "chat", "3"]

    # creating it again (here by id) keeps the members
    again = cli.json("pool", "create", "-n", "front", "--deployment-id", f"{ACCT}/deployments/chat")
    assert again == shown
    cli("pool", "member", "remove", "--pool", "front", "--name", "sim")
    assert [m["id"] for m in cli.json("pool", "member", "list", "--pool", "front")] == ["home", "local"]

    assert cli.fails("NotFound", "pool", "create", "-n", "other", "-g", "rg", "--account-name", "acct1",
                     "--deployment-name", "ghost") == f"Specified resource '{ACCT}/deployments/ghost' cannot be found."
    assert cli.fails("Conflict", "pool", "create", "-n", "other", "--deployment-id", f"{ACCT}/deployments/chat") == \
        f"The deployment '{ACCT}/deployments/chat' is already served by the pool 'front'."
    cli("pool", "delete", "--name", "front")
    assert cli.json("pool", "list") == []


def test_usage_errors_print_az_style(cli):
    cases = [
        (("pool", "create", "-n", "p"), "ERROR: Name the deployment the pool serves: --deployment-id, or "
                                        "--resource-group, --account-name and --deployment-name."),
        (("pool", "create", "-n", "p", "-g", "rg"), "ERROR: --resource-group, --account-name and --deployment-name "
                                                    "go together."),
        (("pool", "member", "add", "--pool", "p", "-n", "m", "--backend", "b", "--deployment-id", "x"),
         "ERROR: Give one member: --deployment-id, --resource-group/--account-name/--deployment-name, or --backend."),
        (("fault", "set", "--down"), "ERROR: Give one of --region or --member."),
        (("fault", "clear", "--region", "eastus", "--member", "sim:eastus"),
         "ERROR: Give one of --region or --member."),
    ]
    for args, error in cases:
        done = cli(*args, expect=1)
        assert done.stderr.strip() == error and done.stdout == ""
    assert "member:<pool>/<member id>" in " ".join(cli("fault", "set", "--help").stdout.split())


def test_fault_commands_reach_the_data_plane(cli):
    keys = cli.json("cognitiveservices", "account", "keys", "list", "-n", "acct1", "-g", "rg")
    endpoint = cli.json("cognitiveservices", "account", "show", "-n", "acct1", "-g", "rg")["properties"]["endpoint"]

    def chat() -> requests.Response:
        return requests.post(f"{endpoint}openai/deployments/chat/chat/completions",
                             params={"api-version": "2024-10-21"}, headers={"api-key": keys["key1"]}, timeout=60,
                             json={"messages": [{"role": "user", "content": "hi"}], "max_tokens": 5})

    assert chat().status_code == 200
    fault = cli.json("fault", "set", "--region", "eastus", "--down")
    assert fault == {"scope": "region", "target": "eastus", "rate429": 0.0, "rate503": 0.0, "retryAfterSeconds": 1.0,
                     "latencyMs": 0.0, "hang": False, "cutAfter": None, "down": True}
    down = chat()
    assert down.status_code == 503 and down.json()["error"]["code"] == "ServiceUnavailable"
    cli("fault", "clear", "--region", "eastus")
    assert chat().status_code == 200

    cli("pool", "create", "-n", "front", "-g", "rg", "--account-name", "acct1", "--deployment-name", "chat")
    cli("pool", "member", "add", "--pool", "front", "-n", "home", "--deployment-id", f"{ACCT}/deployments/chat")
    cli("fault", "set", "--member", "member:front/home", "--rate-429", "0.5", "--rate-503", "0.25",
        "--retry-after", "2", "--latency-ms", "300", "--cut-after", "4")
    cli("fault", "set", "--member", "sim:westus", "--hang")
    table = cli("fault", "list", "-o", "table").stdout.splitlines()
    assert table[0].split() == ["Scope", "Target", "Rate429", "Rate503", "RetryAfter", "LatencyMs", "Hang",
                                "CutAfter", "Down"]
    assert [line.split() for line in table[2:]] == [
        ["member", "member:front/home", "0.5", "0.25", "2.0", "300.0", "False", "4", "False"],
        ["member", "sim:westus", "0.0", "0.0", "1.0", "0.0", "True", "False"]]
    assert cli.fails("InvalidParameter", "fault", "set", "--region", "eastus", "--rate-429", "2") == \
        "The value '2.0' of 'rate429' is invalid. It must be a number from 0 to 1."
    assert cli.fails("NotFound", "fault", "set", "--member", "member:front/ghost", "--down") == \
        "Specified resource '/lapis/admin/pools/front/members/ghost' cannot be found."
    assert cli.json("fault", "reset") == {"removed": 2}
    assert cli.json("fault", "list") == []
    assert chat().status_code == 200
