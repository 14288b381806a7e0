"""Data-plane routes: find the account, check version and credentials, find
the deployment, decode, hand over to the service, encode.

Each account's endpoint can be reached three ways (see management.shapes.endpoint_for):
    /accounts/{subdomain}/openai/...          path form, what Lapis prints
    /regions/{location}/openai/...            regional form, account found by key
    /openai/... with Host {subdomain}.openai.azure.com   hosts-file / proxy form
"""

from __future__ import annotations

from typing import Any, AsyncIterator, Awaitable, Callable

import msgspec
from aiohttp import web

from lapis.ratelimit.policy import is_provisioned
from lapis.requestkeys import state_of
from lapis.tracing import tracing_headers
from lapis.auth import actions
from lapis.dataplane import admission, apiversions, chat, embeddings, network, responses
from lapis.dataplane.directory import AccountEntry, DeploymentEntry
from lapis.dataplane.protocol import ChatRequest, CompletionsRequest, EmbeddingsRequest, decode
from lapis.dataplane.streaming import stream_chat
from lapis.diagnostics import content
from lapis.errors import catalogue as errors
from lapis.errors import keyvault as keyvault_errors
from lapis.identity.service import verify_bearer
from lapis.identity.tokens import COGNITIVE_SERVICES, InvalidToken
from lapis.backends.base import ChatCall, Completion
from lapis.serving.route import Route
from lapis.services import Services

_encode = msgspec.json.encode
_HOST_SUFFIXES = (".openai.azure.com", ".cognitiveservices.azure.com", ".services.ai.azure.com")
SERVED_REGION_HEADER = "x-lapis-served-region"  # Lapis's own: the location whose engine answered
OPERATIONS = {"chat": "chat", "completions": "completions", "embeddings": "embeddings"}


def json_response(payload: Any, headers: dict[str, str], status: int = 200) -> web.Response:
    headers["Content-Type"] = "application/json"
    return web.Response(body=_encode(payload), status=status, headers=headers)


class DataPlane:
    def __init__(self, services: Services):
        self.services = services

    @property
    def trusted(self) -> tuple:
        """The trusted proxies, parsed once."""
        cached = getattr(self, "_trusted", None)
        if cached is None:
            cached = self._trusted = network.parse_networks(self.services.settings.trusted_proxies)
        return cached

    # -- resolution ----------------------------------------------------------

    def _presented_key(self, request: web.Request, v1: bool) -> tuple[str | None, bool]:
        """(credential, is_bearer)."""
        key = request.headers.get("api-key")
        if key is not None:
            return key, False
        auth = request.headers.get("Authorization", "")
        scheme, _, token = auth.partition(" ")
        if scheme.lower() == "bearer" and token:
            return token.strip(), True
        return None, False

    def _account(self, request: web.Request, key: str | None) -> AccountEntry:
        directory = self.services.directory
        info = request.match_info
        if "account" in info:
            entry = directory.by_subdomain.get(info["account"].lower())
        elif "region" in info:
            entry = directory.for_key(key) if key else None
            if entry is not None and entry.location != info["region"].lower():
                entry = None
            if entry is None:
                raise errors.invalid_key()
        else:
            host = request.host.rsplit(":", 1)[0].lower() if request.host else ""
            sub = next((host[: -len(s)] for s in _HOST_SUFFIXES if host.endswith(s)), None)
            entry = directory.by_subdomain.get(sub) if sub else None
        if entry is None:
            raise errors.resource_not_found()
        return entry

    async def _authorize(self, request: web.Request, v1: bool, operation: str) -> AccountEntry:
        """Version, account, network, then credentials (§12.1's order): an
        api-key (or, on /openai/v1, the key as a bearer token), or an Entra
        token whose principal holds the operation's data action."""
        version = request.query.get("api-version")
        if v1:
            if version is not None and version not in apiversions.V1:
                raise errors.api_version_not_supported()
        elif version is None:
            raise errors.resource_not_found()
        elif version not in apiversions.KNOWN:
            raise errors.api_version_not_supported()
        key, bearer = self._presented_key(request, v1)
        entry = self._account(request, key)
        state = state_of(request)
        state.account = entry
        endpoints = self.services.private_endpoints  # lapis.network.private_endpoints: listeners bound to one account
        private = endpoints.admits(request, entry.id) if endpoints.bound else False
        if not entry.public_network_access and not private:
            raise errors.public_access_disabled()
        if entry.encryption_blocked:
            raise keyvault_errors.customer_managed_key_inaccessible()
        if entry.allowed_networks is not None and not private:
            caller = network.client_address(request.remote, request.headers.get("X-Forwarded-For"), self.trusted)
            if not network.permitted(caller, entry.allowed_networks):
                raise errors.firewall_denied()
        if key is None:
            raise errors.invalid_key()
        if bearer and (not v1 or _looks_like_jwt(key)):
            await self._check_token(request, entry, key, v1, operation)
            self.services.budgets.check(entry)  # a spent hard-capped budget: 429 (lapis.budgets)
            return entry
        if entry.disable_local_auth:
            raise errors.key_auth_disabled()
        which = entry.which_key(key)
        if which is None:
            raise errors.invalid_key()
        state.caller = which
        self.services.budgets.check(entry)
        return entry

    async def _check_token(self, request: web.Request, entry: AccountEntry, token: str, v1: bool,
                           operation: str) -> None:
        """Keys bypass RBAC; tokens need the data action at the account's scope."""
        try:
            claims = await verify_bearer(self.services, token, (COGNITIVE_SERVICES,))
        except InvalidToken:
            raise errors.invalid_token() from None
        state_of(request).caller = claims.oid
        action = DATA_ACTIONS[(operation, v1)]
        if not await self.services.authorizer.allowed_data_action(claims.oid, action.action, entry.arm_id):
            raise errors.permission_denied(claims.oid, action.action, action.method, action.route_template)

    def _deployment(self, request: web.Request, entry: AccountEntry, name: str | None, operation: str) -> DeploymentEntry:
        dep = entry.deployment(name) if name else None
        if dep is None:
            raise errors.deployment_not_found()
        state_of(request).deployment = dep
        if dep.model.kind != OPERATIONS[operation]:
            raise errors.operation_not_supported(operation, dep.model.name)
        return dep

    def headers(self, request: web.Request) -> dict[str, str]:
        state = state_of(request)
        out = {"x-ms-region": state.region}
        dep, served = state.deployment, state.served
        if served is not None:
            out["x-ms-deployment-name"], out[SERVED_REGION_HEADER] = served
        elif dep is not None:
            out["x-ms-deployment-name"] = dep.name
        if state.spilled_from:
            out["x-ms-spillover-from-deployment"] = state.spilled_from
        ticket = state.admission
        if ticket is not None and dep is not None:
            out.update(ticket.headers(is_provisioned(dep.sku)))
        return tracing_headers(request, out)

    async def _body(self, request: web.Request) -> bytes:
        """The request body. A small body has usually arrived whole with the
        headers: then it is taken as it is, with no wait (what request.read()
        does with two awaits and a copy), and held to the same size limit."""
        content = request.content
        if not content.is_eof():
            return await request.read()
        body = content.read_nowait(-1)
        if len(body) > self.services.settings.max_body_bytes:
            raise web.HTTPRequestEntityTooLarge(max_size=self.services.settings.max_body_bytes,
                                                actual_size=len(body))
        return body

    async def _admit(self, request: web.Request, entry: AccountEntry, dep: DeploymentEntry, cost: int,
                     operation: str) -> tuple[admission.Admission | None, DeploymentEntry, Route]:
        """Admission against the deployment's quota; on a 429, its spillover
        deployment (x-ms-spillover-deployment, else spilloverDeploymentName)
        if that one has room. A pooled deployment admits nothing itself:
        its member deployments do (lapis.serving.plans)."""
        serving = self.services.serving
        route = serving.route(entry, dep) if serving is not None else Route((), direct=self.services.backend)
        if route.pooled:
            return None, dep, route
        gate = self.services.gate
        ticket = await gate.reserve(entry, dep, cost)
        state = state_of(request)
        if ticket.decision.allowed:
            state.admission = ticket
            return ticket, dep, route
        spill_name = request.headers.get("x-ms-spillover-deployment") or dep.spillover
        spill = entry.deployment(spill_name) if spill_name else None
        if spill is not None and spill is not dep and spill.model.kind == dep.model.kind:
            spill_ticket = await gate.reserve(entry, spill, cost)
            if spill_ticket.decision.allowed:
                state.spilled_from = dep.name
                state.deployment = spill
                state.admission = spill_ticket
                return spill_ticket, spill, serving.route(entry, spill) if serving is not None else route
        raise gate.throttled(request, entry, dep, ticket, operation)

    def _settle(self, ticket: admission.Admission | None, used: int) -> None:
        if ticket is not None:
            self.services.gate.settle(ticket, used)

    async def _complete(self, request: web.Request, route: Route, call: ChatCall) -> Completion:
        if route.direct is not None:
            return await route.direct.chat(call)
        serving = self.services.serving
        result, member = await serving.balancer.chat(route.members, call, serving.deadline())
        state_of(request).served = (member.name, member.region)
        return result

    async def _open_stream(self, request: web.Request, route: Route, call: ChatCall) -> AsyncIterator[Any]:
        """The stream's items; through the balancer, the first one is already
        in hand, so a failure before the first byte fails over (or becomes
        an HTTP error) instead of an in-band one."""
        if route.direct is not None:
            return route.direct.chat_stream(call)
        serving = self.services.serving
        items, member = await serving.balancer.chat_stream(route.members, call, serving.deadline())
        state_of(request).served = (member.name, member.region)
        return items

    # -- handlers ------------------------------------------------------------

    async def chat_completions(self, request: web.Request) -> web.StreamResponse:
        v1 = _is_v1(request)
        entry = await self._authorize(request, v1, "chat")
        body = await self._body(request)
        name = request.match_info.get("deployment")
        if v1:
            name = _model_from(body)
        dep = self._deployment(request, entry, name, "chat")
        req = decode(body, ChatRequest)
        content.capture(request, self.services, body, "messages")  # only when a diagnostic setting asks
        call, prompt = chat.resolve_chat(req, dep)
        ticket, dep, route = await self._admit(request, entry, dep, admission.chat_cost(req, dep), "chat")
        used = 0
        try:
            if req.stream:
                include_usage = bool(req.stream_options and req.stream_options.include_usage)
                items = await self._open_stream(request, route, call)
                response, counts = await stream_chat(request, items, call, dep.model_id, prompt, include_usage,
                                                     self.headers(request))
                state_of(request).usage = (*counts, 0)
                used = sum(counts)
                return response
            result = await self._complete(request, route, call)
            content.answered(request, result.choices)
            prompt, completion = chat.usage_of(result, prompt, call.tokenizer)
            state_of(request).usage = (prompt, completion, 0)
            used = prompt + completion
            payload = responses.chat_completion(result.choices, dep.model_id, prompt, completion)
        finally:
            self._settle(ticket, used)
        return json_response(payload, self.headers(request))

    async def completions(self, request: web.Request) -> web.StreamResponse:
        entry = await self._authorize(request, False, "completions")
        body = await self._body(request)
        dep = self._deployment(request, entry, request.match_info.get("deployment"), "completions")
        req = decode(body, CompletionsRequest)
        content.capture(request, self.services, body, "prompt")
        calls, prompts = chat.resolve_completions(req, dep)
        prompt = sum(prompts)
        if req.stream and len(calls) > 1:
            raise errors.invalid_value("prompt", "Lapis streams one prompt at a time; send the prompts in "
                                       "separate requests.", None)
        ticket, dep, route = await self._admit(request, entry, dep, admission.completions_cost(req, dep),
                                               "completions")
        used = 0
        try:
            if req.stream:
                include_usage = bool(req.stream_options and req.stream_options.include_usage)
                items = await self._open_stream(request, route, calls[0])
                response, counts = await stream_chat(request, items, calls[0], dep.model_id, prompt,
                                                     include_usage, self.headers(request), text=True)
                state_of(request).usage = (*counts, 0)
                used = sum(counts)
                return response
            choices = []
            counted_prompt = completion = 0
            for call, call_prompt in zip(calls, prompts):
                result = await self._complete(request, route, call)
                part_prompt, part_completion = chat.usage_of(result, call_prompt, call.tokenizer)
                counted_prompt += part_prompt
                completion += part_completion
                for choice in result.choices:
                    choices.append(choice.__class__(len(choices), choice.content, choice.finish_reason))
            prompt = counted_prompt
            content.answered(request, choices, text=True)
            state_of(request).usage = (prompt, completion, 0)
            used = prompt + completion
            payload = responses.text_completion(choices, dep.model_id, prompt, completion, len(calls))
        finally:
            self._settle(ticket, used)
        return json_response(payload, self.headers(request))

    async def embeddings(self, request: web.Request) -> web.Response:
        v1 = _is_v1(request)
        entry = await self._authorize(request, v1, "embeddings")
        body = await self._body(request)
        name = _model_from(body) if v1 else request.match_info.get("deployment")
        dep = self._deployment(request, entry, name, "embeddings")
        req = decode(body, EmbeddingsRequest)
        content.capture(request, self.services, body, "input")
        call, prompt, as_base64 = embeddings.resolve(req, dep)
        ticket, dep, route = await self._admit(request, entry, dep, admission.embeddings_cost(call.inputs),
                                               "embeddings")
        try:
            if route.direct is not None:
                vectors = await route.direct.embed(call)
            else:
                serving = self.services.serving
                vectors, member = await serving.balancer.embed(route.members, call, serving.deadline())
                state_of(request).served = (member.name, member.region)
        finally:
            self._settle(ticket, ticket.cost if ticket else 0)  # an embedding costs what was charged
        state_of(request).usage = (prompt, 0, 0)
        items = [responses.embedding_item(i, v, as_base64) for i, v in enumerate(vectors)]
        return json_response(responses.embeddings(items, dep.model.name, prompt), self.headers(request))

    async def models(self, request: web.Request) -> web.Response:
        v1 = _is_v1(request)
        entry = await self._authorize(request, v1, "models")
        data = []
        for model, version, _sku in self.services.catalogue.offers(entry.location):
            model_id = f"{model.name}-{version.version}"
            if data and data[-1]["id"] == model_id:
                continue
            data.append({"capabilities": {k: v == "true" for k, v in model.capabilities.items()
                                          if v in ("true", "false")},
                         "created": 1704067200, "created_at": 1704067200, "deprecation": version.deprecation or {},
                         "id": model_id, "lifecycle_status": "generally-available" if version.lifecycle_status
                         == "GenerallyAvailable" else version.lifecycle_status.lower(),
                         "object": "model", "owned_by": "system", "status": "succeeded"})
        return json_response({"data": data, "object": "list"}, self.headers(request))


DATA_ACTIONS = {("chat", False): actions.CHAT, ("chat", True): actions.V1_CHAT,
                ("completions", False): actions.COMPLETIONS, ("embeddings", False): actions.EMBEDDINGS,
                ("embeddings", True): actions.V1_EMBEDDINGS, ("models", False): actions.MODELS_LIST,
                ("models", True): actions.V1_MODELS_LIST}


def _looks_like_jwt(value: str) -> bool:
    """On /openai/v1 a bearer value is either the account key or an Entra token."""
    return value.count(".") == 2


def _is_v1(request: web.Request) -> bool:
    return "/openai/v1/" in request.path


def _model_from(body: bytes) -> str | None:
    """v1 routes name the deployment in the body's `model`."""
    try:
        raw = msgspec.json.decode(body)
    except msgspec.DecodeError:
        raise errors.invalid_json() from None
    if not isinstance(raw, dict):
        raise errors.invalid_json()
    model = raw.get("model")
    if model is None:
        raise errors.missing_parameter("model")
    if not isinstance(model, str):
        raise errors.invalid_type("model", "str", "object")
    return model


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def add_routes(app: web.Application, plane: DataPlane) -> None:
    legacy = {
        "deployments/{deployment}/chat/completions": plane.chat_completions,
        "deployments/{deployment}/completions": plane.completions,
        "deployments/{deployment}/embeddings": plane.embeddings,
    }
    v1 = {"v1/chat/completions": plane.chat_completions, "v1/embeddings": plane.embeddings}
    # The router tries resources in order: the path form Lapis prints comes first.
    for prefix in ("/accounts/{account}", "", "/regions/{region}"):
        for tail, handler in legacy.items():
            app.router.add_post(f"{prefix}/openai/{tail}", handler)
        for tail, handler in v1.items():
            app.router.add_post(f"{prefix}/openai/{tail}", handler)
        app.router.add_get(f"{prefix}/openai/models", plane.models)
        app.router.add_get(f"{prefix}/openai/v1/models", plane.models)
