"""Real Node.js clients against a real Lapis server (`lapis_server`, started with --demo).

Three scripts in tests/node, each printing one JSON object on stdout:

* summarize.ts    the setup guide's Step 4 snippet (node-fetch), verbatim, run with tsx
* sdk.mjs         npm `openai` (AzureOpenAI + plain OpenAI on /openai/v1/)
* fetch_plain.mjs Node's global fetch with no Content-Type (so the body goes as text/plain)

The npm dependencies are installed once per session with `npm ci` from the committed
package-lock.json (that install step is the only network use; everything else is loopback).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

NODE_DIR = Path(__file__).resolve().parents[1] / "node"
NODE_MODULES = NODE_DIR / "node_modules"
INSTALLED_MARKER = NODE_MODULES / ".installed"  # same marker as the Makefile's `node` target
RUN_TIMEOUT = 120  # seconds, per node process

PINNED = {"openai": "6.49.0", "node-fetch": "3.3.2"}

# Node tests start processes; allow more than the default per-test budget so that the
# session's `npm ci` plus one node run fit in whichever test sets them up.
pytestmark = pytest.mark.timeout(RUN_TIMEOUT + 180)


def _require(tool: str) -> str:
    path = shutil.which(tool)
    if not path:
        pytest.fail(f"`{tool}` is not on PATH: the Node client tests need Node 20+ and npm", pytrace=False)
    return path


def _install_is_current() -> bool:
    if not INSTALLED_MARKER.exists() or not (NODE_MODULES / ".package-lock.json").exists():
        return False
    stamp = INSTALLED_MARKER.stat().st_mtime
    return all((NODE_DIR / name).stat().st_mtime <= stamp for name in ("package.json", "package-lock.json"))


@pytest.fixture(scope="session")
def node_modules() -> Path:
    """`npm ci` in tests/node, once per session (skipped if the Makefile's marker is current)."""
    _require("node")
    npm = _require("npm")
    lock = NODE_DIR / "package-lock.json"
    assert lock.exists(), f"{lock} is missing: run `npm install` in {NODE_DIR} and commit the lock file"
    # Serialise concurrent pytest sessions: `npm ci` deletes node_modules first.
    digest = hashlib.sha256(str(NODE_DIR).encode()).hexdigest()[:12]
    lock_path = Path(tempfile.gettempdir()) / f"lapis-npm-ci-{digest}.lock"
    with open(lock_path, "w") as lock_file:
        fcntl.flock(lock_file, fcntl.LOCK_EX)
        try:
            if not _install_is_current():
                proc = subprocess.run(
                    [npm, "ci", "--no-audit", "--no-fund", "--prefer-offline"],
                    cwd=NODE_DIR, capture_output=True, text=True, timeout=600,
                )
                if proc.returncode != 0:
                    pytest.fail(
                        f"`npm ci` failed in {NODE_DIR} (exit {proc.returncode}):\n"
                        f"--- stdout ---\n{proc.stdout}\n--- stderr ---\n{proc.stderr}",
                        pytrace=False,
                    )
                INSTALLED_MARKER.touch()
        finally:
            fcntl.flock(lock_file, fcntl.LOCK_UN)
    tsx = NODE_MODULES / ".bin" / "tsx"
    assert tsx.exists(), f"npm ci did not install tsx ({tsx} missing)"
    for name, version in PINNED.items():
        installed = json.loads((NODE_MODULES / name / "package.json").read_text())["version"]
        assert installed == version, f"{name} {installed} installed, {version} pinned"
    return NODE_MODULES


@pytest.fixture(scope="session")
def node_env(demo: dict[str, str]) -> dict[str, str]:
    """os.environ without any OpenAI/Azure OpenAI settings, plus the four demo variables.

    OPENAI_BASE_URL in particular must go: AzureOpenAI throws
    "baseURL and endpoint are mutually exclusive" when it is set.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "AZURE_OPENAI"))}
    env.update(demo)
    env["AZURE_OPENAI_EMBEDDING_DEPLOYMENT"] = "text-embedding-3-small"
    no_proxy = ",".join(filter(None, [env.get("NO_PROXY", ""), "127.0.0.1", "localhost"]))
    env["NO_PROXY"] = env["no_proxy"] = no_proxy
    return env


def run_node(args: list[str], env: dict[str, str], server) -> dict:
    """Run a node command in tests/node and return the JSON object on its last stdout line."""
    try:
        proc = subprocess.run(args, cwd=NODE_DIR, env=env, capture_output=True, text=True, timeout=RUN_TIMEOUT)
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"{args} timed out after {RUN_TIMEOUT}s\nstdout: {exc.stdout}\nstderr: {exc.stderr}\n"
                    f"--- server log (tail) ---\n{server.log()[-4000:]}", pytrace=False)
    lines = [line for line in proc.stdout.splitlines() if line.strip()]
    if proc.returncode != 0 or not lines:
        pytest.fail(f"{args} exited {proc.returncode}\n--- stdout ---\n{proc.stdout}\n--- stderr ---\n{proc.stderr}\n"
                    f"--- server log (tail) ---\n{server.log()[-4000:]}", pytrace=False)
    try:
        return json.loads(lines[-1])
    except ValueError:
        pytest.fail(f"{args} did not print JSON on its last line:\n{proc.stdout}\n{proc.stderr}", pytrace=False)


def section(result: dict, name: str) -> dict:
    """One section of sdk.mjs's output; a caught JS exception there fails the test with its stack."""
    value = result[name]
    assert "error" not in value, f"sdk.mjs section {name!r} threw:\n{value['error']}"
    return value


def assert_usage(usage: dict) -> None:
    assert isinstance(usage, dict), usage
    for key in ("prompt_tokens", "completion_tokens", "total_tokens"):
        assert isinstance(usage[key], int), (key, usage)
    assert usage["prompt_tokens"] > 0
    assert usage["completion_tokens"] > 0
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]


def assert_content(content) -> None:
    assert isinstance(content, str), content
    assert content.strip(), f"empty content: {content!r}"


# -- the setup guide's Step 4 snippet (node-fetch, TypeScript via tsx) --------------------------


def test_summarize_ts_keeps_the_guide_snippet_verbatim():
    source = (NODE_DIR / "summarize.ts").read_text()
    assert source.startswith('import fetch from "node-fetch";\n')
    assert (
        "const endpoint = `${process.env.AZURE_OPENAI_ENDPOINT}/openai/deployments/"
        "${process.env.AZURE_OPENAI_DEPLOYMENT}/chat/completions?api-version="
        '${process.env.AZURE_OPENAI_API_VERSION ?? "2024-07-01-preview"}`;\n'
    ) in source
    assert "export async function summarize(text: string) {" in source


def test_setup_guide_node_snippet(node_modules, node_env, lapis_server):
    tsx = str(node_modules / ".bin" / "tsx")
    out = run_node([tsx, "summarize.ts", "Lunch with a customer, 54.20 EUR, Contoso account review."],
                   node_env, lapis_server)
    assert_content(out["content"])


# -- npm openai ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sdk(node_modules, node_env, lapis_server) -> dict:
    return run_node([_require("node"), "sdk.mjs"], node_env, lapis_server)


def test_sdk_is_the_verified_version(sdk):
    assert sdk["sdk_version"] == PINNED["openai"]
    assert int(sdk["node_version"].lstrip("v").split(".")[0]) >= 20


def test_sdk_chat_completion(sdk):
    chat = section(sdk, "chat")
    assert chat["id"].startswith("chatcmpl-"), chat["id"]
    assert chat["object"] == "chat.completion"
    assert chat["model"] == "gpt-4o-mini-2024-07-18"
    assert isinstance(chat["created"], int) and chat["created"] > 1_600_000_000
    assert chat["n_choices"] == 1
    assert chat["role"] == "assistant"
    assert chat["finish_reason"] in ("stop", "length")
    assert_content(chat["content"])
    assert_usage(chat["usage"])


def test_sdk_streaming_chat_with_usage(sdk):
    stream = section(sdk, "stream")
    assert stream["deltas"], "no content deltas streamed"
    assert_content(stream["content"])
    assert stream["content"] == "".join(stream["deltas"])
    assert len(stream["ids"]) == 1 and stream["ids"][0].startswith("chatcmpl-"), stream["ids"]
    assert stream["objects"] == ["chat.completion.chunk"]
    # Azure's leading prompt_filter_results chunk (id "", object "") is optional, first if present.
    assert stream["filter_chunks"] <= 1
    if stream["filter_chunks"]:
        assert stream["filter_chunk_first"] is True
    assert stream["finish_reason"] in ("stop", "length")
    assert stream["usage"] is not None, "no usage chunk despite stream_options.include_usage"
    assert stream["usage_chunk_choices"] == 0, "the usage chunk must have choices: []"
    assert_usage(stream["usage"])


def test_sdk_stream_helper_accumulates_the_deltas(sdk):
    helper = section(sdk, "stream_helper")
    assert_content(helper["content"])
    assert helper["content"] == helper["deltas_joined"]
    assert helper["finish_reason"] in ("stop", "length")
    assert_usage(helper["usage"])


def test_sdk_embeddings_default_base64_decoded(sdk):
    emb = section(sdk, "embeddings")
    # What the SDK put on the wire, and what Lapis sent back before decoding.
    assert emb["wire"].get("request_encoding_format") == "base64", emb["wire"]
    assert emb["wire"].get("response_embedding_type") == "string", emb["wire"]
    assert "/openai/deployments/text-embedding-3-small/embeddings" in emb["wire"]["request_url"]
    assert emb["object"] == "list"
    assert emb["n_data"] == 1
    assert emb["is_array"] is True
    assert emb["length"] == 1536
    assert emb["all_finite"] is True
    assert emb["all_zero"] is False
    assert abs(emb["norm"] - 1.0) < 1e-3, emb["norm"]
    assert emb["usage"]["prompt_tokens"] > 0


def test_sdk_unknown_deployment_raises_not_found(sdk):
    nf = section(sdk, "not_found")
    assert nf["raised"] is True, "chat on an unknown deployment did not throw"
    assert nf["is_not_found_error"] is True, nf
    assert nf["status"] == 404
    assert nf["code"] == "DeploymentNotFound"


def test_sdk_plain_openai_client_on_v1(sdk):
    v1 = section(sdk, "v1")
    assert v1["id"].startswith("chatcmpl-"), v1["id"]
    assert v1["object"] == "chat.completion"
    assert v1["model"].startswith("gpt-4o-mini"), v1["model"]
    assert v1["finish_reason"] in ("stop", "length")
    assert_content(v1["content"])
    assert_usage(v1["usage"])


# -- Node's global fetch, no Content-Type -------------------------------------------------------


def test_global_fetch_text_plain_body(node_modules, node_env, lapis_server):
    out = run_node([_require("node"), "fetch_plain.mjs"], node_env, lapis_server)
    assert out["content_type_sent"].startswith("text/plain"), out["content_type_sent"]
    assert out["status"] == 200, out["body"]
    assert out["response_content_type"].startswith("application/json"), out["response_content_type"]
    assert_content(out["content"])
