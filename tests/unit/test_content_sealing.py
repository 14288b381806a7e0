"""Opt-in prompt and response text (lapis.diagnostics.content): the setting's flag, what is kept,
sealing for the file sinks, and opening on read with every way a key can be missing."""

from __future__ import annotations

import asyncio
import json

import pytest
from aiohttp import web
from aiohttp.test_utils import make_mocked_request

from lapis.backends.base import Choice, ToolCall
from lapis.crypto import envelope
from lapis.crypto.envelope import SealedValueError
from lapis.crypto.keyring import KeyUnavailable
from lapis.diagnostics import content
from lapis.diagnostics.settings import DiagnosticSetting, read_properties
from lapis.errors import ApiError
from lapis.requestkeys import state_of

HOOK = "http://127.0.0.1:9/logs"


def props(*logs: dict) -> dict:
    return read_properties({"properties": {"webhookUrl": HOOK, "logs": list(logs)}})


def refused(*logs: dict) -> str:
    with pytest.raises(ApiError) as caught:
        props(*logs)
    assert caught.value.status == 400 and caught.value.json()["code"] == "BadRequest"
    return caught.value.json()["message"]


def test_the_flag_is_off_by_default_validated_and_echoed():
    plain = props({"category": "RequestResponse", "enabled": True})
    assert "lapisIncludeContent" not in plain["logs"][0]
    assert not DiagnosticSetting("a", "d", "/x", "eastus", plain).includes_content()
    asked = props({"category": "RequestResponse", "enabled": True, "lapisIncludeContent": True})
    assert asked["logs"][0]["lapisIncludeContent"] is True
    assert DiagnosticSetting("a", "d", "/x", "eastus", asked).includes_content()
    grouped = props({"categoryGroup": "allLogs", "enabled": True, "lapisIncludeContent": True})
    assert DiagnosticSetting("a", "d", "/x", "eastus", grouped).includes_content()
    disabled = props({"category": "RequestResponse", "enabled": False, "lapisIncludeContent": True})
    assert not DiagnosticSetting("a", "d", "/x", "eastus", disabled).includes_content()
    declined = props({"category": "RequestResponse", "enabled": True, "lapisIncludeContent": False})
    assert declined["logs"][0]["lapisIncludeContent"] is False
    assert not DiagnosticSetting("a", "d", "/x", "eastus", declined).includes_content()


def test_a_flag_that_is_not_a_boolean_or_not_on_request_response_is_refused():
    assert refused({"category": "RequestResponse", "enabled": True, "lapisIncludeContent": "yes"}) == (
        "The 'lapisIncludeContent' property of a log setting must be a boolean.")
    assert "applies only to the RequestResponse" in refused(
        {"category": "Audit", "enabled": True, "lapisIncludeContent": True})
    assert "applies only to the RequestResponse" in refused(
        {"categoryGroup": "audit", "enabled": True, "lapisIncludeContent": True})


class Diagnostics:
    def __init__(self, wanted: set[str]):
        self.wanted = wanted

    def wants_content(self, account_id: str) -> bool:
        return account_id in self.wanted


class Services:
    def __init__(self, wanted: set[str]):
        self.diagnostics = Diagnostics(wanted)


class Account:
    id = "acct1"


def mocked() -> web.Request:
    request = make_mocked_request("POST", "/")
    state_of(request).account = Account()  # type: ignore[assignment]
    return request


MESSAGES = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Ünïcode prompt"}]
BODY = json.dumps({"messages": MESSAGES, "max_tokens": 5}).encode()


def test_nothing_is_kept_unless_a_setting_asks():
    request = mocked()
    content.capture(request, Services(set()), BODY, "messages")
    content.answered(request, [Choice(0, "an answer", "stop")])
    content.streamed(request, {0: ["an answer"]}, {}, False)
    assert state_of(request).content is None


def test_a_chat_answer_with_tool_calls_is_kept_per_choice():
    request = mocked()
    content.capture(request, Services({"acct1"}), BODY, "messages")
    call = ToolCall("call_1", "lookup", '{"q": "x"}')
    content.answered(request, [Choice(0, "first", "stop"), Choice(1, None, "tool_calls", (call,))])
    kept = state_of(request).content
    assert json.loads(kept["requestContent"]) == MESSAGES
    assert json.loads(kept["responseContent"]) == [
        {"role": "assistant", "content": "first"},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": "lookup", "arguments": '{"q": "x"}'}}]}]


def test_a_stream_keeps_what_was_sent_with_tool_call_fragments_joined():
    request = mocked()
    content.capture(request, Services({"acct1"}), BODY, "messages")
    fragments = [ToolCall("call_9", "lookup", '{"q"'), ToolCall("call_9", "", ': 1}')]
    content.streamed(request, {0: ["Hel", "lo"]}, {1: fragments}, False)
    assert json.loads(state_of(request).content["responseContent"]) == [
        {"role": "assistant", "content": "Hello"},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "call_9", "type": "function", "function": {"name": "lookup", "arguments": '{"q": 1}'}}]}]
    text = mocked()
    content.capture(text, Services({"acct1"}), b'{"prompt": ["a", "b"]}', "prompt")
    content.streamed(text, {0: ["once ", "upon"]}, {}, True)
    assert json.loads(state_of(text).content["requestContent"]) == ["a", "b"]
    assert json.loads(state_of(text).content["responseContent"]) == ["once upon"]


def record(account_id: str, request_id: str) -> content.ContentLog:
    base = {"correlationId": request_id, "category": "RequestResponse", "properties": {"promptTokens": 3}}
    return content.with_content(base, account_id, {"requestContent": '"secret words"',
                                                   "responseContent": '["secret answer"]'})


def test_sealing_makes_copies_and_never_writes_the_clear_text():
    key = envelope.new_data_key()
    shown, hidden, plain = record("a1", "r1"), record("gone", "r2"), {"category": "Audit", "properties": {}}
    out = content.sealed([shown, hidden, plain], {"a1": key, "gone": None})
    written = json.dumps(out)
    assert "secret" not in written and out[2] is plain
    assert shown["properties"]["requestContent"] == '"secret words"'  # the queued original is untouched
    sealed_value = out[0]["properties"]["requestContent"]
    assert sealed_value.startswith("lapis:v1:acct-a1:") and out[0]["properties"]["promptTokens"] == 3
    assert envelope.open_text(key, sealed_value, "diagnostics.requestContent:r1") == '"secret words"'
    with pytest.raises(SealedValueError):  # bound to its record: another request id does not open it
        envelope.open_text(key, sealed_value, "diagnostics.requestContent:r2")
    assert out[1]["properties"]["responseContent"] == content.NOT_SEALED
    assert content.sealed([plain], {}) == [plain]


class Keyring:
    """data_key as the real keyring answers it: a key, KeyUnavailable, or SealedValueError (deleted)."""

    def __init__(self, keys: dict[str, bytes]):
        self.keys = keys
        self.fetched: list[str] = []

    async def data_key(self, key_id: str) -> bytes:
        self.fetched.append(key_id)
        if key_id == "acct-cmk":
            raise KeyUnavailable(key_id, "kv1", "k1", "v1")
        if key_id not in self.keys:
            raise SealedValueError(f"data key {key_id} does not exist")
        return self.keys[key_id]


def row_of(log: dict) -> dict:
    props = log["properties"]
    return {"CorrelationId": log["correlationId"], "properties_s": json.dumps(props),
            **{f"{k}_s": v for k, v in props.items() if isinstance(v, str)}}


async def test_rows_open_in_a_worker_thread_and_missing_keys_read_as_placeholders():
    keys = {"a1": envelope.new_data_key(), "cmk": envelope.new_data_key(), "gone": envelope.new_data_key()}
    logs = content.sealed([record("a1", "r1"), record("a1", "r3"), record("cmk", "r2"), record("gone", "r4")], keys)
    rows = [row_of(log) for log in logs]
    rows[1]["requestContent_s"] = rows[0]["requestContent_s"]  # moved to another record: does not open
    keyring = Keyring({"acct-a1": keys["a1"]})
    opener = content.Opener(keyring)
    opener.loop = asyncio.get_running_loop()
    assert opener.reader()(dict(rows[0])) == rows[0]  # on the loop's own thread rows stay sealed
    opened = await asyncio.to_thread(lambda: [opener.reader()(dict(r)) for r in rows])
    assert opened[0]["requestContent_s"] == '"secret words"' and opened[0]["responseContent_s"] == '["secret answer"]'
    assert json.loads(opened[0]["properties_s"])["requestContent"] == '"secret words"'
    assert opened[1]["requestContent_s"] == content.UNREADABLE
    assert opened[1]["responseContent_s"] == '["secret answer"]'
    assert opened[2]["requestContent_s"] == opened[2]["responseContent_s"] == content.KEY_UNAVAILABLE
    assert json.loads(opened[2]["properties_s"])["responseContent"] == content.KEY_UNAVAILABLE
    assert opened[3]["requestContent_s"] == content.UNREADABLE
    assert sorted(set(keyring.fetched)) == ["acct-a1", "acct-cmk", "acct-gone"]


async def test_data_keys_are_fetched_once_per_account_and_missing_ones_are_none():
    keyring = Keyring({"acct-a1": b"k" * 32})
    found = await content.data_keys(keyring, [record("a1", "r1"), record("a1", "r2"), record("cmk", "r3"),
                                              {"category": "Audit"}])
    assert found == {"a1": b"k" * 32, "cmk": None} and keyring.fetched == ["acct-a1", "acct-cmk"]
    assert await content.data_keys(keyring, [{"category": "Audit"}]) == {}
