"""Key Vault's REST API for keys, served under /vaults/{vault}/ on the Lapis server.

Azure serves a vault at https://{vault}.vault.azure.net/; Lapis serves it at
{base URL}/vaults/{vault}/ (the same path shape after the vault's root, as
accounts live under /accounts/{subdomain}/):

    POST  /vaults/{vault}/keys/{name}/create      {"kty", "key_size"?, "key_ops"?, "attributes"?, "tags"?}
    POST  /vaults/{vault}/keys/{name}/rotate      a new version like the current one
    GET   /vaults/{vault}/keys                    {"value": [KeyItem], "nextLink": null}
    GET   /vaults/{vault}/keys/{name}/versions    the same, one item per version
    GET   /vaults/{vault}/keys/{name}[/{version}] KeyBundle (the current version without one)
    PATCH /vaults/{vault}/keys/{name}[/{version}] {"attributes": {"enabled"}, "tags", "key_ops"} -> KeyBundle

Lapis's choices: the caller presents the local admin credential as a bearer
token (Key Vault's 401 with its challenge otherwise); any api-version is
accepted (7.4 is what the CLI sends); one page holds every item. Rotating a
key, or changing a version's `enabled`, is followed at once by the accounts
the key protects (lapis.keyvault.cmk.after_key_change).
"""

from __future__ import annotations

import hmac
import json
from typing import Any, Awaitable, Callable

from aiohttp import web

from lapis.crypto.vault import BadKeyParameter, KeyDisabled, KeyNotFound, check_names
from lapis.errors import keyvault as kv_errors
from lapis.keyvault import cmk, shapes
from lapis.management.bodies import json_object
from lapis.services import DEFAULT_TENANT, Services

Handler = Callable[[web.Request], Awaitable[web.Response]]


def _json(data: Any, status: int = 200) -> web.Response:
    return web.Response(body=json.dumps(data).encode(), status=status, content_type="application/json",
                        charset="utf-8")


async def _body(request: web.Request) -> dict[str, Any]:
    body, _ = json_object(await request.read())
    if body is None:
        raise kv_errors.kv_bad_parameter("The request body must be a JSON object.")
    return body


def add_routes(app: web.Application, services: Callable[[], Services]) -> None:
    def guarded(handler: Callable[[web.Request, Services], Awaitable[web.Response]]) -> Handler:
        """Admin credential first, then the vault's errors as Key Vault's bodies."""
        async def run(request: web.Request) -> web.Response:
            found = services()
            header = request.headers.get("Authorization", "")
            scheme, _, token = header.partition(" ")
            if scheme.lower() != "bearer" or not token.strip():
                raise kv_errors.kv_unauthorized(found.settings.base_url, DEFAULT_TENANT, missing=True)
            if not hmac.compare_digest(token.strip().encode(), found.admin_token.encode()):
                raise kv_errors.kv_unauthorized(found.settings.base_url, DEFAULT_TENANT, missing=False)
            info = request.match_info
            try:
                check_names(info["vault"], info.get("name"))
                return await handler(request, found)
            except KeyNotFound:
                raise kv_errors.kv_key_not_found(info.get("name", "")) from None
            except KeyDisabled as disabled:
                raise kv_errors.kv_key_disabled(disabled.operation) from None
            except BadKeyParameter as bad:
                raise kv_errors.kv_bad_parameter(str(bad)) from None
        return run

    def base(found: Services) -> str:
        return found.settings.base_url

    async def create(request: web.Request, found: Services) -> web.Response:
        body = await _body(request)
        if "kty" not in body:
            raise kv_errors.kv_bad_parameter("The parameter 'kty' is required.")
        attributes = body.get("attributes") or {}
        enabled = attributes.get("enabled", True) if isinstance(attributes, dict) else True
        if not isinstance(enabled, bool):
            raise kv_errors.kv_bad_parameter("attributes.enabled must be true or false.")
        info = request.match_info
        made = await found.store.keyring.vault.create_key(info["vault"], info["name"], body.get("kty"),
                                                         body.get("key_size"), body.get("key_ops"), enabled,
                                                         body.get("tags"))
        await cmk.after_key_change(found, made.vault, made.name, rotated=True)  # a new version is a rotation
        return _json(shapes.key_bundle(made, base(found)))

    async def rotate(request: web.Request, found: Services) -> web.Response:
        info = request.match_info
        made = await found.store.keyring.vault.rotate(info["vault"], info["name"])
        await cmk.after_key_change(found, made.vault, made.name, rotated=True)
        return _json(shapes.key_bundle(made, base(found)))

    async def list_keys(request: web.Request, found: Services) -> web.Response:
        keys = await found.store.keyring.vault.keys(request.match_info["vault"])
        return _json(shapes.key_list([shapes.key_item(k, base(found), versioned=False) for k in keys]))

    async def list_versions(request: web.Request, found: Services) -> web.Response:
        info = request.match_info
        versions = await found.store.keyring.vault.versions(info["vault"], info["name"])
        if not versions:
            raise KeyNotFound(info["vault"], info["name"])
        return _json(shapes.key_list([shapes.key_item(v, base(found), versioned=True) for v in versions]))

    async def get_key(request: web.Request, found: Services) -> web.Response:
        info = request.match_info
        got = await found.store.keyring.vault.get(info["vault"], info["name"], info.get("version") or None)
        return _json(shapes.key_bundle(got, base(found)))

    async def update_key(request: web.Request, found: Services) -> web.Response:
        info = request.match_info
        body = await _body(request)
        attributes = body.get("attributes") or {}
        if not isinstance(attributes, dict):
            raise kv_errors.kv_bad_parameter("attributes must be an object.")
        vault = found.store.keyring.vault
        before = await vault.get(info["vault"], info["name"], info.get("version") or None)
        after = await vault.update(info["vault"], info["name"], before.version, attributes.get("enabled"),
                                   body.get("tags"), body.get("key_ops"))
        if after.enabled != before.enabled:
            await cmk.after_key_change(found, after.vault, after.name, rotated=False)
        return _json(shapes.key_bundle(after, base(found)))

    prefix = "/vaults/{vault}/keys"
    app.router.add_get(prefix, guarded(list_keys))
    app.router.add_post(prefix + "/{name}/create", guarded(create))
    app.router.add_post(prefix + "/{name}/rotate", guarded(rotate))
    app.router.add_get(prefix + "/{name}/versions", guarded(list_versions))
    for path in (prefix + "/{name}", prefix + "/{name}/", prefix + "/{name}/{version}"):
        app.router.add_get(path, guarded(get_key))
        app.router.add_patch(path, guarded(update_key))
