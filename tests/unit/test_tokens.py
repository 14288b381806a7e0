"""Tokenizer interface and the chat prompt counting rule."""

from __future__ import annotations

import json

import pytest

from lapis import tokens
from lapis.tokens import count_chat_prompt, count_text, encoding


@pytest.mark.parametrize("name", ["o200k_base", "cl100k_base"])
def test_encoding_round_trip_and_cache(name: str) -> None:
    enc = encoding(name)
    assert encoding(name) is enc
    assert enc.name == name
    text = "Hello, world! Ünïcødé and 日本語 text."
    ids = enc.encode(text)
    assert enc.decode(ids) == text
    assert enc.count(text) == len(ids)
    assert count_text(text, name) == len(ids)
    assert enc.count("") == 0 and enc.encode("") == []


@pytest.mark.parametrize("name", ["o200k_base", "cl100k_base"])
def test_special_looking_text_is_ordinary(name: str) -> None:
    enc = encoding(name)
    text = "before <|endoftext|> after <|fim_prefix|>"
    ids = enc.encode(text)  # must not raise
    assert enc.decode(ids) == text
    assert enc.count(text) == len(ids) > 5


def test_encodings_differ() -> None:
    text = "Der schnelle braune Fuchs springt über den faulen Hund. 東京タワー"
    assert count_text(text, "o200k_base") != count_text(text, "cl100k_base")


def test_unknown_encoding() -> None:
    with pytest.raises(ValueError):
        encoding("no_such_base")


def test_hand_checked_hello() -> None:
    # 3 (message) + "user" (1) + "Hello" (1) + 3 (reply priming) = 8, which is
    # what the OpenAI API reports as prompt_tokens for this request on gpt-4o.
    enc = encoding("o200k_base")
    assert enc.count("user") == 1 and enc.count("Hello") == 1
    assert count_chat_prompt([{"role": "user", "content": "Hello"}], None, "o200k_base") == 8


def _t(text: str) -> int:
    return count_text(text, "o200k_base")


def test_rule_all_fields() -> None:
    tool_args = '{"city":"Paris","unit":"celsius"}'
    messages = [
        {"role": "system", "content": "You are a helpful assistant."},
        {"role": "user", "name": "alice", "content": "What is the weather in Paris?"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {"id": "call_abc", "type": "function", "function": {"name": "get_weather", "arguments": tool_args}}
            ],
        },
        {"role": "tool", "tool_call_id": "call_abc", "content": "18 degrees, sunny"},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "Thanks! And "},
                {"type": "text", "text": "tomorrow?"},
                {"type": "image_url", "image_url": {"url": "https://example.com/a.png"}},
            ],
        },
    ]
    tools = [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "description": "Weather for a city",
                "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
            },
        }
    ]
    expected = (
        3 * len(messages)
        + sum(_t(m["role"]) for m in messages)
        + _t("You are a helpful assistant.")
        + _t("alice") + 1
        + _t("What is the weather in Paris?")
        + _t("get_weather") + _t(tool_args)
        + _t("18 degrees, sunny")
        + _t("Thanks! And ") + _t("tomorrow?") + tokens.IMAGE_PART_TOKENS
        + 3
    )
    assert count_chat_prompt(messages, None, "o200k_base") == expected
    assert count_chat_prompt(messages, [], "o200k_base") == expected
    tools_text = json.dumps(tools, separators=(",", ":"))
    assert tokens.tools_json(tools) == tools_text
    with_tools = expected + _t(tools_text) + tokens.TOOLS_OVERHEAD_TOKENS
    assert count_chat_prompt(messages, tools, "o200k_base") == with_tools


def test_rule_depends_on_encoding() -> None:
    messages = [{"role": "user", "content": "Grüße aus München, 東京から"}]
    for name in ("o200k_base", "cl100k_base"):
        assert count_chat_prompt(messages, None, name) == 3 + 1 + count_text(messages[0]["content"], name) + 3


def test_empty_messages_only_priming() -> None:
    assert count_chat_prompt([], None, "cl100k_base") == 3


def test_every_chat_role_is_one_token():
    from lapis import tokens

    for name in ("o200k_base", "cl100k_base"):
        for role in tokens._ROLE_TOKENS:
            assert tokens.count_text(role, name) == 1


def test_remembered_counts_match_fresh_counts_and_stay_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    enc = tokens.Encoding("o200k_base")  # a fresh instance: an empty count cache
    monkeypatch.setattr(tokens, "COUNT_CACHE_SIZE", 3)
    texts = [f"message number {i} about cordless drills" for i in range(5)]
    first = [enc.count(t) for t in texts]
    assert first == [len(enc.encode(t)) for t in texts]
    assert [enc.count(t) for t in texts] == first  # the same answers when remembered
    assert len(enc._counts) == 3 and list(enc._counts) == texts[2:]  # the oldest were forgotten
    long = "word " * (tokens.COUNT_CACHE_MAX_CHARS // 5 + 1)
    assert enc.count(long) == len(enc.encode(long)) and long not in enc._counts
    assert enc.count("") == 0
