"""Embeddings: validate the input forms and options, resolve into a backend call.

Accepted inputs: a string, an array of strings, an array of token ids, or an
array of arrays of token ids. `encoding_format` float (the default) or base64
(little-endian float32, what the SDKs ask for by default).
"""

from __future__ import annotations

from typing import Any

from lapis import tokens
from lapis.backends.base import EmbedCall
from lapis.dataplane.directory import DeploymentEntry
from lapis.dataplane.protocol import EmbeddingsRequest
from lapis.errors import catalogue as errors

MAX_INPUTS = 2048
FORMATS = ("float", "base64")


def _invalid_input() -> errors.ApiError:
    return errors.invalid_value("input", "'$.input' is invalid. Please check the API reference: "
                                "https://platform.openai.com/docs/api-reference.", None)


def _inputs(raw: str | list[Any]) -> list[str | list[int]]:
    if isinstance(raw, str):
        if not raw:
            raise _invalid_input()
        return [raw]
    if not raw:
        raise _invalid_input()
    if all(isinstance(x, int) and not isinstance(x, bool) for x in raw):
        return [list(raw)]
    if all(isinstance(x, str) and x for x in raw):
        return list(raw)
    if all(isinstance(x, list) and x and all(isinstance(t, int) and not isinstance(t, bool) for t in x)
           for x in raw):
        return [list(x) for x in raw]
    raise _invalid_input()


def resolve(req: EmbeddingsRequest, dep: DeploymentEntry) -> tuple[EmbedCall, int, bool]:
    """(backend call, prompt tokens, base64?) or Azure's 400."""
    inputs = _inputs(req.input)
    if len(inputs) > MAX_INPUTS:
        raise errors.too_many_inputs(MAX_INPUTS)
    fmt = req.encoding_format or "float"
    if fmt not in FORMATS:
        raise errors.invalid_value("encoding_format", f"Invalid value: '{fmt}'. Supported values are: 'float' and "
                                   "'base64'.")
    native = dep.model.embedding_dimensions or 1536
    dims = native
    if req.dimensions is not None:
        if not dep.model.supports_dimensions:
            raise errors.dimensions_not_supported()
        if not 1 <= req.dimensions <= native:
            raise errors.integer_out_of_range("dimensions", req.dimensions, 1, native)
        dims = req.dimensions
    window = dep.version.context_window
    total = 0
    for item in inputs:
        count = len(item) if isinstance(item, list) else tokens.count_text(item, dep.model.tokenizer)
        if count > window:
            raise errors.embedding_input_too_long(window, count)
        total += count
    call = EmbedCall(model=dep.model.name, version=dep.version.version, inputs=inputs, dimensions=dims)
    return call, total, fmt == "base64"
