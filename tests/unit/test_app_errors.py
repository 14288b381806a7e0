"""What a bug looks like on the wire: Azure's 500 body carrying the request id,
never a stack trace. Driven in-process with a backend that fails."""

from __future__ import annotations

import re

from aiohttp.test_utils import TestClient, TestServer

from lapis import demo, settings
from lapis.app import build_services, create_app
from support.broken_backend import BrokenBackend


async def test_unexpected_failure_is_azures_500_with_the_request_id(tmp_path):
    conf = settings.load({"LAPIS_HOME": str(tmp_path)})
    services = await build_services(conf)
    await demo.seed(services)
    services.backend = BrokenBackend()
    key = (await services.store.accounts())[0].key1
    async with TestClient(TestServer(create_app(conf, services))) as client:
        resp = await client.post("/accounts/lapis-demo/openai/deployments/gpt-4o-mini/chat/completions",
                                 params={"api-version": "2024-10-21"}, headers={"api-key": key},
                                 json={"messages": [{"role": "user", "content": "hi"}]})
        body = await resp.json()
        assert resp.status == 500
        request_id = resp.headers["apim-request-id"]
        assert body["error"]["type"] == "server_error" and body["error"]["code"] is None
        assert body["error"]["param"] is None
        assert f"(Please include the request ID {request_id} in your message.)" in body["error"]["message"]
        assert "Traceback" not in await resp.text() and "exploded" not in await resp.text()
        assert re.fullmatch(r"[0-9a-f-]{36}", request_id)


def test_request_ids_are_version_4_uuids_and_unique() -> None:
    import uuid

    from lapis.tracing import request_id

    ids = {request_id() for _ in range(5000)}
    assert len(ids) == 5000
    for value in list(ids)[:500]:
        parsed = uuid.UUID(value)
        assert str(parsed) == value and parsed.version == 4 and parsed.variant == uuid.RFC_4122


async def test_every_kind_of_answer_carries_the_tracing_headers(tmp_path):
    """Data plane, its errors, ARM and /healthz: the request id twice, nosniff, and the client's id echoed."""
    conf = settings.load({"LAPIS_HOME": str(tmp_path)})
    services = await build_services(conf)
    await demo.seed(services)
    key = (await services.store.accounts())[0].key1
    chat = "/accounts/lapis-demo/openai/deployments/gpt-4o-mini/chat/completions"
    async with TestClient(TestServer(create_app(conf, services))) as client:
        answers = [await client.post(chat, params={"api-version": "2024-10-21"},
                                     headers={"api-key": key, "x-ms-client-request-id": "mine-1"},
                                     json={"messages": [{"role": "user", "content": "hi"}], "max_tokens": 2})]
        answers.append(await client.post(chat, params={"api-version": "2024-10-21"},
                                         headers={"api-key": "wrong", "x-ms-client-request-id": "mine-2"}, json={}))
        answers.append(await client.get("/subscriptions/00000000-0000-0000-0000-000000000000",
                                        params={"api-version": "2022-12-01"},
                                        headers={"x-ms-client-request-id": "mine-3"}))
        answers.append(await client.get("/healthz", headers={"x-ms-client-request-id": "mine-4"}))
        seen = set()
        for n, resp in enumerate(answers, 1):
            await resp.read()
            rid = resp.headers["apim-request-id"]
            assert resp.headers["x-request-id"] == rid and re.fullmatch(r"[0-9a-f-]{36}", rid)
            assert resp.headers["x-content-type-options"] == "nosniff"
            assert resp.headers["x-ms-client-request-id"] == f"mine-{n}"
            seen.add(rid)
        assert [r.status for r in answers] == [200, 401, 401, 200] and len(seen) == 4


async def test_a_small_body_over_the_limit_is_refused_like_a_large_one(tmp_path):
    """A body that arrives whole with the headers is held to LAPIS_MAX_BODY_BYTES too (413, Azure's body)."""
    conf = settings.load({"LAPIS_HOME": str(tmp_path), "LAPIS_MAX_BODY_BYTES": "2000"})
    services = await build_services(conf)
    await demo.seed(services)
    key = (await services.store.accounts())[0].key1
    chat = "/accounts/lapis-demo/openai/deployments/gpt-4o-mini/chat/completions"
    async with TestClient(TestServer(create_app(conf, services))) as client:
        fits = await client.post(chat, params={"api-version": "2024-10-21"}, headers={"api-key": key},
                                 json={"messages": [{"role": "user", "content": "a" * 1900}], "max_tokens": 2})
        over = await client.post(chat, params={"api-version": "2024-10-21"}, headers={"api-key": key},
                                 json={"messages": [{"role": "user", "content": "a" * 2100}], "max_tokens": 2})
        assert fits.status == 200 and (await fits.json())["object"] == "chat.completion"
        assert over.status == 413
        assert await over.read() == (b'{"error":{"code":"413","message":"The request body is too large. '
                                     b'The maximum request size is 2000 bytes."}}')
