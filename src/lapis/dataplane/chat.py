"""Chat and legacy completions: validate, count, resolve into a backend call.

Validation follows the order and wording of the service's own validator
(docs/wire-decisions.md): shape of messages, ranges, token limits, then the
context window of the catalogue's model version.
"""

from __future__ import annotations

from typing import Any, Sequence

from lapis import tokens
from lapis.backends.base import ChatCall, Choice, Completion
from lapis.dataplane.directory import DeploymentEntry
from lapis.dataplane.protocol import ChatRequest, CompletionsRequest
from lapis.errors import catalogue as errors

ROLES = ("system", "assistant", "user", "function", "tool", "developer")
_ROLE_LIST = "'system', 'assistant', 'user', 'function', 'tool', and 'developer'"
MAX_STOP = 4
MAX_N = 128
COMPLETIONS_DEFAULT_MAX_TOKENS = 16  # the legacy API's documented default (§4.1)


def _check_messages(messages: list[Any]) -> list[dict[str, Any]]:
    if not messages:
        raise errors.empty_array("messages")
    for i, message in enumerate(messages):
        if not isinstance(message, dict):
            raise errors.invalid_type(f"messages[{i}]", "object", _json_type(message))
        role = message.get("role")
        if role is None:
            raise errors.missing_parameter(f"messages[{i}].role")
        if role not in ROLES:
            raise errors.invalid_value(f"messages[{i}].role",
                                       f"Invalid value: '{role}'. Supported values are: {_ROLE_LIST}.")
        content = message.get("content")
        if content is not None and not isinstance(content, (str, list)):
            raise errors.invalid_type(f"messages[{i}].content", "str", _json_type(content))
    return messages


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "float"
    if isinstance(value, str):
        return "str"
    return "array" if isinstance(value, list) else "object"


def _check_common(n: int | None, temperature: float | None, top_p: float | None,
                  stop: str | list[str] | None) -> tuple[int, tuple[str, ...]]:
    count = 1 if n is None else n
    if not 1 <= count <= MAX_N:
        raise errors.integer_out_of_range("n", count, 1, MAX_N)
    if temperature is not None and not 0 <= temperature <= 2:
        raise errors.decimal_out_of_range("temperature", temperature, 0, 2)
    if top_p is not None and not 0 <= top_p <= 1:
        raise errors.decimal_out_of_range("top_p", top_p, 0, 1)
    stops = (stop,) if isinstance(stop, str) else tuple(stop or ())
    if len(stops) > MAX_STOP:
        raise errors.invalid_value("stop", f"Invalid 'stop': array too long. Expected an array with maximum length "
                                   f"{MAX_STOP}, but got an array with length {len(stops)} instead.",
                                   "array_above_max_length")
    return count, stops


def _check_tools(tools: list[dict[str, Any]] | None, tool_choice: Any) -> None:
    if tools is None:
        if isinstance(tool_choice, dict) or tool_choice == "required":
            raise errors.invalid_value("tool_choice", "Invalid value for 'tool_choice': 'tool_choice' is only "
                                       "allowed when 'tools' are specified.", None)
        return
    if not tools:
        raise errors.empty_array("tools")
    names = []
    for i, tool in enumerate(tools):
        function = tool.get("function")
        if tool.get("type", "function") != "function" or not isinstance(function, dict):
            raise errors.missing_parameter(f"tools[{i}].function")
        if not isinstance(function.get("name"), str):
            raise errors.missing_parameter(f"tools[{i}].function.name")
        names.append(function["name"])
    if isinstance(tool_choice, str) and tool_choice not in ("none", "auto", "required"):
        raise errors.invalid_value("tool_choice", f"Invalid value: '{tool_choice}'. Supported values are: "
                                   "'none', 'auto', and 'required'.")
    if isinstance(tool_choice, dict):
        wanted = (tool_choice.get("function") or {}).get("name")
        if wanted not in names:
            raise errors.invalid_value("tool_choice", f"Invalid value for 'tool_choice': tool choice '{wanted}' "
                                       "does not match any of the specified tools.", None)


def _check_response_format(fmt: dict[str, Any] | None) -> None:
    if fmt is None:
        return
    kind = fmt.get("type")
    if kind not in ("text", "json_object", "json_schema"):
        raise errors.invalid_value("response_format.type", f"Invalid value: '{kind}'. Supported values are: "
                                   "'json_object', 'json_schema', and 'text'.")
    if kind == "json_schema" and not isinstance(fmt.get("json_schema"), dict):
        raise errors.missing_parameter("response_format.json_schema")


def _completion_budget(dep: DeploymentEntry, prompt: int, param: str, requested: int | None) -> int:
    """The effective max tokens, after the limit and context checks."""
    window = dep.version.context_window
    limit = dep.version.max_output_tokens
    if requested is not None:
        if requested < 1:
            raise errors.integer_out_of_range(param, requested, 1, None)
        if requested > limit:
            raise errors.max_tokens_too_large(param, requested, limit)
        if prompt + requested > window:
            raise errors.context_length_exceeded(window, prompt, requested)
        return requested
    if prompt > window:
        raise errors.context_length_exceeded(window, prompt, None)
    return max(1, min(limit, window - prompt))


def resolve_chat(req: ChatRequest, dep: DeploymentEntry) -> tuple[ChatCall, int]:
    """(backend call, prompt tokens) for a chat request, or Azure's 400."""
    messages = _check_messages(req.messages)
    n, stops = _check_common(req.n, req.temperature, req.top_p, req.stop)
    _check_tools(req.tools, req.tool_choice)
    _check_response_format(req.response_format)
    prompt = tokens.count_chat_prompt(messages, req.tools, dep.model.tokenizer)
    param = "max_completion_tokens" if req.max_completion_tokens is not None else "max_tokens"
    requested = req.max_completion_tokens if req.max_completion_tokens is not None else req.max_tokens
    budget = _completion_budget(dep, prompt, param, requested)
    call = ChatCall(
        model=dep.model.name, version=dep.version.version, messages=messages, max_tokens=budget, n=n,
        stop=stops, temperature=1.0 if req.temperature is None else req.temperature, seed=req.seed,
        tools=req.tools, tool_choice=req.tool_choice, response_format=req.response_format,
        tokenizer=dep.model.tokenizer, extra=_extra(req, _CHAT_EXTRA),
    )
    return call, prompt


# Fields a real engine should see that ChatCall does not model itself: sent
# upstream as given (None means absent and is not sent).
_SHARED_EXTRA = ("top_p", "presence_penalty", "frequency_penalty", "logit_bias", "user")
_CHAT_EXTRA = _SHARED_EXTRA + ("logprobs", "top_logprobs", "parallel_tool_calls", "reasoning_effort",
                               "service_tier", "prompt_cache_key", "safety_identifier", "verbosity", "metadata")
# Legacy completions go to engines as chat: echo, best_of, suffix and the
# integer logprobs have no chat equivalent and are not sent.
_COMPLETIONS_EXTRA = _SHARED_EXTRA


def _extra(req: object, names: tuple[str, ...]) -> dict[str, Any]:
    out = {}
    for name in names:
        value = getattr(req, name)
        if value is not None:
            out[name] = value
    return out


def usage_of(result: Completion, counted_prompt: int, tokenizer: str) -> tuple[int, int]:
    """(prompt, completion) tokens: the engine's own usage when it gave one,
    else the prompt as counted at admission and the completion counted here."""
    if result.usage is not None:
        return result.usage.prompt_tokens, result.usage.completion_tokens
    return counted_prompt, completion_tokens(result.choices, tokenizer)


def resolve_completions(req: CompletionsRequest, dep: DeploymentEntry) -> tuple[list[ChatCall], list[int]]:
    """One backend call per prompt (legacy API), and each one's prompt tokens."""
    prompts = req.prompt if isinstance(req.prompt, list) else [req.prompt or ""]
    if not prompts:
        raise errors.empty_array("prompt")
    if not all(isinstance(p, str) for p in prompts):
        raise errors.invalid_type("prompt", "str", "array")
    n, stops = _check_common(req.n, req.temperature, req.top_p, req.stop)
    counts = [tokens.count_text(p, dep.model.tokenizer) for p in prompts]
    requested = COMPLETIONS_DEFAULT_MAX_TOKENS if req.max_tokens is None else req.max_tokens
    calls = []
    for text, count in zip(prompts, counts):
        budget = _completion_budget(dep, count, "max_tokens", requested)
        calls.append(ChatCall(
            model=dep.model.name, version=dep.version.version, messages=[{"role": "user", "content": text}],
            max_tokens=budget, n=n, stop=stops, temperature=1.0 if req.temperature is None else req.temperature,
            seed=req.seed, tokenizer=dep.model.tokenizer, extra=_extra(req, _COMPLETIONS_EXTRA),
        ))
    return calls, counts


def completion_tokens(choices: Sequence[Choice], tokenizer: str) -> int:
    """Exact count of what was generated: content plus tool-call names and arguments."""
    total = 0
    for choice in choices:
        if choice.content:
            total += tokens.count_text(choice.content, tokenizer)
        for call in choice.tool_calls:
            total += tokens.count_text(call.name, tokenizer) + tokens.count_text(call.arguments, tokenizer)
    return total
