"""Azure-shaped answer bodies (lapis.dataplane.responses)."""

from __future__ import annotations

import json
import re

import msgspec

from lapis.backends.base import Choice
from lapis.dataplane import responses


def test_completion_ids_have_the_captured_shape_and_never_repeat() -> None:
    ids = [responses.new_id("chatcmpl-") for _ in range(5000)] + [responses.new_id("cmpl-") for _ in range(10)]
    assert len(set(ids)) == len(ids)
    assert all(re.fullmatch(r"(chat)?cmpl-[0-9A-Za-z]{29}", i) for i in ids)


def test_the_pre_encoded_filter_annotations_read_as_the_plain_ones() -> None:
    """Answers carry their constant content-filter parts pre-encoded: the JSON must be what the dicts say."""
    choices = [Choice(0, "first", "stop"), Choice(1, "second", "length")]
    chat = json.loads(msgspec.json.encode(responses.chat_completion(choices, "gpt-4o-mini-2024-07-18", 12, 3)))
    assert [c["content_filter_results"] for c in chat["choices"]] == [responses.CHOICE_FILTERS] * 2
    assert chat["prompt_filter_results"] == responses.prompt_filter_results(1)
    assert list(chat["prompt_filter_results"][0]) == ["prompt_index", "content_filter_results"]  # as captured
    text = json.loads(msgspec.json.encode(responses.text_completion(choices, "gpt-35-turbo-instruct-0914", 5, 3, 2)))
    assert [c["content_filter_results"] for c in text["choices"]] == [responses.CHOICE_FILTERS] * 2
    assert text["prompt_filter_results"] == responses.prompt_filter_results(2)
