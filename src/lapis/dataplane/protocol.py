"""Wire schemas of the inference API requests, and their decoding. No I/O.

Bodies are decoded with msgspec into typed Structs (the measured fast path).
Decoding failures are translated here, at one boundary, into the errors Azure
answers with: invalid JSON, wrong types, missing and unknown fields.
"""

from __future__ import annotations

import re
from typing import Any, TypeVar

import msgspec

from lapis.errors import ApiError
from lapis.errors import catalogue as errors


class StreamOptions(msgspec.Struct, forbid_unknown_fields=True):
    include_usage: bool | None = None
    include_obfuscation: bool | None = None


class _Sampling(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """Fields chat and legacy completions share."""

    model: str | None = None
    max_tokens: int | None = None
    n: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    stop: str | list[str] | None = None
    stream: bool | None = None
    stream_options: StreamOptions | None = None
    seed: int | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    logit_bias: dict[str, float] | None = None
    user: str | None = None


class ChatRequest(_Sampling, kw_only=True):
    messages: list[Any]
    max_completion_tokens: int | None = None
    tools: list[dict[str, Any]] | None = None
    tool_choice: str | dict[str, Any] | None = None
    parallel_tool_calls: bool | None = None
    response_format: dict[str, Any] | None = None
    logprobs: bool | None = None
    top_logprobs: int | None = None
    functions: list[dict[str, Any]] | None = None
    function_call: str | dict[str, Any] | None = None
    data_sources: list[dict[str, Any]] | None = None
    store: bool | None = None
    metadata: dict[str, str] | None = None
    reasoning_effort: str | None = None
    modalities: list[str] | None = None
    prediction: dict[str, Any] | None = None
    audio: dict[str, Any] | None = None
    user_security_context: dict[str, Any] | None = None
    service_tier: str | None = None
    prompt_cache_key: str | None = None
    safety_identifier: str | None = None
    verbosity: str | None = None
    web_search_options: dict[str, Any] | None = None


class CompletionsRequest(_Sampling, kw_only=True):
    prompt: str | list[Any] | None = None
    echo: bool | None = None
    best_of: int | None = None
    logprobs: int | None = None
    suffix: str | None = None


class EmbeddingsRequest(msgspec.Struct, forbid_unknown_fields=True):
    # str, list[str], list[int] or list[list[int]]: msgspec unions allow one
    # array type, so the element types are checked in dataplane.embeddings.
    input: str | list[Any]
    model: str | None = None
    dimensions: int | None = None
    encoding_format: str | None = None
    user: str | None = None
    input_type: str | None = None


T = TypeVar("T", bound=msgspec.Struct)

_decoders: dict[type, msgspec.json.Decoder] = {}
_TYPE_ERROR = re.compile(r"^Expected `(?P<want>[^`]+)`, got `(?P<got>[^`]+)`(?: - at `\$(?P<path>[^`]*)`)?$")
_UNKNOWN = re.compile(r"^Object contains unknown field `(?P<name>[^`]+)`(?: - at `\$(?P<path>[^`]*)`)?$")
_MISSING = re.compile(r"^Object missing required field `(?P<name>[^`]+)`(?: - at `\$(?P<path>[^`]*)`)?$")


def decode(body: bytes, kind: type[T]) -> T:
    """Decode a request body (whatever its Content-Type) or raise Azure's error."""
    decoder = _decoders.get(kind)
    if decoder is None:
        decoder = _decoders[kind] = msgspec.json.Decoder(kind)
    try:
        return decoder.decode(body)
    except msgspec.ValidationError as exc:
        raise _translate(str(exc), body, kind) from None
    except msgspec.DecodeError:
        raise errors.invalid_json() from None


def _param(path: str | None, name: str | None = None) -> str:
    path = (path or "").lstrip(".")
    if name:
        path = f"{path}.{name}" if path else name
    return path


def _first_type(spec: str) -> str:
    """msgspec names the expected type as `float | null`; report the non-null one."""
    kinds = [k.strip() for k in spec.split("|") if k.strip() != "null"]
    return kinds[0] if kinds else "null"


def _translate(message: str, body: bytes, kind: type) -> ApiError:
    if match := _TYPE_ERROR.match(message):
        if not match.group("path"):
            return errors.invalid_json()  # the body itself is not a JSON object
        return errors.invalid_type(_param(match.group("path")), _first_type(match.group("want")), match.group("got"))
    if match := _UNKNOWN.match(message):
        if match.group("path"):
            return errors.invalid_value(_param(match.group("path"), match.group("name")),
                                        f"Unknown parameter: '{_param(match.group('path'), match.group('name'))}'.",
                                        "unknown_parameter")
        return errors.unrecognized_arguments(unknown_fields(body, kind))
    if match := _MISSING.match(message):
        return errors.missing_parameter(_param(match.group("path"), match.group("name")))
    return errors.invalid_value(None, message)  # type: ignore[arg-type]


def unknown_fields(body: bytes, kind: type) -> list[str]:
    """Every top-level field the schema does not know, in the order sent."""
    known = set(kind.__struct_fields__)
    raw = msgspec.json.decode(body)
    return [name for name in raw if name not in known] if isinstance(raw, dict) else []
