"""End to end against a real engine (issue 5): the `openai` AzureOpenAI client
talks to Lapis, which forwards to llama-cpp-python's OpenAI-compatible server
running Gemma 3 270M (installed by `make engine` into .engine-venv).

The model's answers are not useful; what is checked is the gateway: Azure's
shape around the engine's output, its usage, streaming, and the headers.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import openai
import pytest
import requests

from lapis import tokens

from support.server import ROOT, free_port, start_server

ENGINE_PYTHON = ROOT / ".engine-venv" / "bin" / "python"
MODEL = Path.home() / ".cache" / "lapis" / "models" / "gemma-3-270m-q4_k_m.gguf"


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> str:
    """llama_cpp.server on a free port; its base URL. Missing? Run `make engine`."""
    assert ENGINE_PYTHON.exists() and MODEL.exists(), "the real engine is not installed: run `make engine`"
    port = free_port()
    log = open(tmp_path_factory.mktemp("engine") / "engine.log", "wb")
    proc = subprocess.Popen([str(ENGINE_PYTHON), "-m", "llama_cpp.server", "--model", str(MODEL),
                             "--chat_format", "gemma", "--host", "127.0.0.1", "--port", str(port),
                             "--n_ctx", "2048"], stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/v1"
    try:
        for _ in range(120):
            try:
                if requests.get(f"{url}/models", timeout=1).ok:
                    break
            except requests.ConnectionError:
                pass
            assert proc.poll() is None, "the engine exited at start"
            time.sleep(0.25)
        yield url
    finally:
        proc.terminate()
        proc.wait(10)


@pytest.fixture(scope="module")
def gateway(engine: str, tmp_path_factory: pytest.TempPathFactory):
    server = start_server(tmp_path_factory.mktemp("home"), demo=True)
    try:
        body = {"region": "eastus", "model": "gpt-4o-mini", "kind": "openai-compatible", "url": engine,
                "upstreamModel": "gemma-3-270m"}
        answer = requests.put(f"{server.url}/lapis/admin/backends/llama-eastus", json=body,
                              headers={"Authorization": f"Bearer {server.admin_token}"}, timeout=10)
        assert answer.status_code in (200, 201), answer.text
        yield server
    finally:
        server.stop()


def _client(server) -> openai.AzureOpenAI:
    env = server.demo_env()
    return openai.AzureOpenAI(azure_endpoint=env["AZURE_OPENAI_ENDPOINT"], api_key=env["AZURE_OPENAI_KEY"],
                              api_version=env["AZURE_OPENAI_API_VERSION"], max_retries=0)


def test_chat_is_answered_by_the_engine_in_azures_shape(gateway) -> None:
    client = _client(gateway)
    raw = client.chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "Say hi"}], max_tokens=8, temperature=0)
    completion = raw.parse()
    assert raw.headers["x-lapis-served-region"] == "eastus"
    assert raw.headers["x-ms-deployment-name"] == "gpt-4o-mini"
    assert completion.model == "gpt-4o-mini-2024-07-18"  # Azure's model id, not the engine's name
    assert completion.id.startswith("chatcmpl-")
    assert completion.prompt_filter_results[0]["content_filter_results"]["hate"]["filtered"] is False
    assert completion.choices[0].message.content
    assert completion.choices[0].finish_reason in ("stop", "length")
    # Usage is the engine's own: Gemma's tokenizer, not Lapis's o200k count.
    engine_usage = requests.post(f"{gateway_engine_url(gateway)}/chat/completions", json={
        "model": "x", "messages": [{"role": "user", "content": "Say hi"}], "max_tokens": 8, "temperature": 0},
        timeout=60).json()["usage"]
    assert completion.usage.prompt_tokens == engine_usage["prompt_tokens"]
    assert 1 <= completion.usage.completion_tokens <= 8


def test_streaming_relays_the_engine_in_azures_sequence(gateway) -> None:
    client = _client(gateway)
    stream = client.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "Count to five"}], max_tokens=12,
        stream=True, stream_options={"include_usage": True})
    chunks = list(stream)
    assert chunks[0].choices == [] and chunks[0].prompt_filter_results  # Azure's first event
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finishes and finishes[-1] in ("stop", "length")
    usage = chunks[-1].usage
    # llama.cpp's server sends no usage in streams: Lapis counts with the model's tokenizer.
    assert usage is not None and usage.prompt_tokens > 0
    assert usage.completion_tokens == tokens.count_text(text, "o200k_base")
    assert all(c.model == "gpt-4o-mini-2024-07-18" for c in chunks[1:])


def gateway_engine_url(server) -> str:
    listing = requests.get(f"{server.url}/lapis/admin/backends/llama-eastus",
                           headers={"Authorization": f"Bearer {server.admin_token}"}, timeout=10).json()
    return listing["url"]
