"""Token issue and verification (lapis.identity.tokens) over signing keys in a
real SQLite database: claims, audience rules, and every refusal."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from lapis.identity import tokens
from lapis.identity.principals import Principals, hash_secret, secret_matches
from lapis.identity.signing import SigningKeys
from lapis.identity.tokens import InvalidToken, issue, normalize_audience, resource_audience, verify
from lapis.store.database import open_database
from lapis.store.migrate import migrate

TENANT = "2c6d6e8a-6c61-7069-7300-000000000000"
BASE = "http://127.0.0.1:9"
COG = "https://cognitiveservices.azure.com"


class Clock:
    def __init__(self, now: float = 1_800_000_000.0):
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture()
async def db(tmp_path: Path):
    database = await open_database(f"sqlite:///{tmp_path / 'id.sqlite3'}")
    await migrate(database)
    yield database
    await database.close()


@pytest.fixture()
async def clock() -> Clock:
    return Clock()


@pytest.fixture()
async def keys(db, clock) -> SigningKeys:
    return await SigningKeys.load_or_create(db, clock=clock)


def mint(keys: SigningKeys, clock: Clock, audience: str = COG, **kw) -> tuple[str, int]:
    return issue(keys, tenant=TENANT, subject_oid="oid-1", app_id="app-1", audience=audience, issuer_base=BASE,
                 now=clock.now, **kw)


async def test_issued_token_has_entra_claims_and_verifies(keys, clock):
    token, exp = mint(keys, clock)
    header = jwt.get_unverified_header(token)
    assert header["alg"] == "RS256" and header["kid"] == keys.active().kid
    claims = verify(keys, token, audiences={COG}, now=clock.now)
    assert (claims.oid, claims.tid, claims.appid, claims.aud) == ("oid-1", TENANT, "app-1", COG)
    assert claims.exp == exp == int(clock.now) + 3599 and claims.nbf == int(clock.now)
    assert claims.iss == f"{BASE}/{TENANT}/v2.0"
    assert claims.raw["ver"] == "2.0" and claims.raw["azp"] == "app-1" and claims.raw["sub"] == "oid-1"


@pytest.mark.parametrize("scope, aud", [
    ("https://cognitiveservices.azure.com/.default", COG),
    ("https://cognitiveservices.azure.com//.default", COG),
    ("https://cognitiveservices.azure.com/", COG),
    ("https://management.azure.com/.default", "https://management.azure.com/"),
    ("https://management.core.windows.net//.default", "https://management.core.windows.net/"),
    ("https://example.com/.default", None),
])
def test_scopes_map_to_entra_audiences(scope, aud):
    assert resource_audience(scope) == aud


@pytest.mark.parametrize("token_aud, wanted", [
    (COG, COG + "/"), (COG + "/", COG), (COG, COG + "/.default"),
    ("https://management.azure.com/", "https://management.azure.com"),
    ("https://management.core.windows.net", "https://management.core.windows.net/"),
])
async def test_audience_with_and_without_trailing_slash(keys, clock, token_aud, wanted):
    token, _ = mint(keys, clock, audience=token_aud)
    assert verify(keys, token, audiences={wanted}, now=clock.now).aud == token_aud
    assert normalize_audience(token_aud) == normalize_audience(wanted)


async def test_management_audiences_accept_either_host(keys, clock):
    token, _ = mint(keys, clock, audience="https://management.core.windows.net/")
    assert verify(keys, token, audiences=tokens.MANAGEMENT_AUDIENCES, now=clock.now)


def reason(keys: SigningKeys, token: str, now: float, audiences=(COG,)) -> str:
    with pytest.raises(InvalidToken) as caught:
        verify(keys, token, audiences=set(audiences), now=now)
    return caught.value.reason


async def test_expired(keys, clock):
    token, exp = mint(keys, clock)
    assert verify(keys, token, audiences={COG}, now=exp - 1)
    assert reason(keys, token, exp) == "token expired"
    with pytest.raises(InvalidToken):
        verify(keys, token, audiences={COG}, now=exp + 59, leeway_s=0)
    assert verify(keys, token, audiences={COG}, now=exp + 59, leeway_s=60)


async def test_not_yet_valid(keys, clock):
    token, _ = mint(keys, clock)
    assert reason(keys, token, clock.now - 1) == "token not yet valid"


async def test_wrong_audience(keys, clock):
    token, _ = mint(keys, clock, audience="https://management.azure.com/")
    assert reason(keys, token, clock.now).startswith("wrong audience")
    token, _ = mint(keys, clock, audience="https://cognitiveservices.azure.com.evil.example")
    assert reason(keys, token, clock.now).startswith("wrong audience")


def _segments(token: str) -> list[str]:
    return token.split(".")


def _b64(data: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


async def test_bad_signature(keys, clock):
    token, _ = mint(keys, clock)
    head, body, sig = _segments(token)
    claims = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    claims["oid"] = "someone-else"
    assert reason(keys, f"{head}.{_b64(claims)}.{sig}", clock.now) == "bad signature"
    # signed by a key of our own making, under the published kid
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    forged = jwt.encode(claims, other, algorithm="RS256", headers={"kid": keys.active().kid})
    assert reason(keys, forged, clock.now) == "bad signature"


async def test_unknown_kid(keys, clock):
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    token = jwt.encode({"aud": COG, "oid": "x", "tid": TENANT, "exp": clock.now + 60, "nbf": clock.now}, other,
                       algorithm="RS256", headers={"kid": "not-a-key-of-ours"})
    assert reason(keys, token, clock.now).startswith("unknown signing key")


@pytest.mark.parametrize("token", ["", "abc", "a.b.c", "eyJhbGciOiJub25lIn0.e30."])
async def test_malformed(keys, clock, token):
    with pytest.raises(InvalidToken):
        verify(keys, token, audiences={COG}, now=clock.now)


async def test_alg_none_and_hs256_refused(keys, clock):
    kid = keys.active().kid
    claims = {"aud": COG, "oid": "x", "tid": TENANT, "exp": clock.now + 60, "nbf": clock.now}
    none = f"{_b64({'alg': 'none', 'kid': kid})}.{_b64(claims)}."
    hs = jwt.encode(claims, "secret-key-of-at-least-32-bytes!!", algorithm="HS256", headers={"kid": kid})
    for token in (none, hs):
        assert reason(keys, token, clock.now).startswith("unsupported alg")


async def test_rotation_keeps_old_tokens_until_they_expire(db, keys, clock):
    old_kid = keys.active().kid
    old_token, old_exp = mint(keys, clock)
    clock.now += 100
    new = await keys.rotate()
    assert new.kid != old_kid and keys.active().kid == new.kid
    assert {k["kid"] for k in keys.jwks()["keys"]} == {old_kid, new.kid}
    assert keys.jwks()["keys"][0]["kid"] == new.kid  # the active key first
    assert verify(keys, old_token, audiences={COG}, now=clock.now).oid == "oid-1"
    new_token, _ = mint(keys, clock)
    assert jwt.get_unverified_header(new_token)["kid"] == new.kid
    # another replica sees the rotation, and still verifies the old token
    replica = await SigningKeys.load_or_create(db, clock=clock)
    assert replica.active().kid == new.kid
    assert verify(replica, old_token, audiences={COG}, now=clock.now)
    # once every token of the old key has expired, it leaves the JWKS
    clock.now += 3599
    assert [k["kid"] for k in keys.jwks()["keys"]] == [new.kid]
    assert reason(keys, old_token, clock.now).startswith("unknown signing key")
    clock.now += 120
    assert await keys.prune() == 1


async def test_jwks_shape(keys):
    (key,) = keys.jwks()["keys"]
    assert set(key) == {"kty", "use", "kid", "n", "e", "alg"}
    assert (key["kty"], key["use"], key["alg"], key["e"]) == ("RSA", "sig", "RS256", "AQAB")
    public = jwt.PyJWK(key).key
    assert public.key_size == 2048


def test_secret_hash_never_holds_the_secret():
    stored = hash_secret("s3cret-value")
    assert "s3cret-value" not in stored and stored.startswith("scrypt$")
    assert secret_matches("s3cret-value", stored) and not secret_matches("s3cret-valuf", stored)
    assert not secret_matches("x", "garbage")


async def test_service_principal_secret_check(db):
    principals = Principals(db, TENANT)
    app_id, object_id, password = await principals.create_sp("ci-bot")
    assert (await principals.check_secret(app_id, password)).object_id == object_id
    assert await principals.check_secret(app_id, password + "x") is None
    assert await principals.check_secret("00000000-0000-0000-0000-000000000000", password) is None
    again, same_oid, new_password = await principals.create_sp("CI-Bot")  # az resets the secret of an existing app
    assert (again, same_oid) == (app_id, object_id) and new_password != password
    assert await principals.check_secret(app_id, password) is None
    rows = await db.fetch("SELECT secret_hash FROM service_principals")
    assert all(new_password not in r["secret_hash"] for r in rows)


async def test_managed_identity_lookups(db):
    principals = Principals(db, TENANT)
    mi, created = await principals.create_user_assigned("sub", "rg", "uami")
    assert created and mi.kind == "UserAssigned"
    assert (await principals.create_user_assigned("sub", "RG", "UAMI"))[0] == mi
    assert await principals.by_client_id(mi.client_id.upper()) == mi
    assert await principals.by_object_id(mi.principal_id) == mi
    assert await principals.by_resource_id(mi.resource_id.lower()) == mi
    account = "/subscriptions/sub/resourceGroups/rg/providers/Microsoft.CognitiveServices/accounts/acct"
    system = await principals.ensure_system_assigned(account, "11111111-2222-3333-4444-555555555555")
    assert system.principal_id == "11111111-2222-3333-4444-555555555555" and system.kind == "SystemAssigned"
    assert await principals.ensure_system_assigned(account, system.principal_id) == system
    workload = await principals.workload()
    assert await principals.workload() == workload and workload.resource_id == "/lapis/workload"


async def test_verify_bearer_hook(db, keys, clock):
    from types import SimpleNamespace

    from lapis.identity.service import Identity, verify_bearer

    identity = Identity(keys=keys, principals=Principals(db, TENANT), store=None,  # type: ignore[arg-type]
                        tenant=TENANT, issuer_base=BASE, identity_header="h", admin_object_id="admin-oid")
    token, _ = await identity.mint(subject_oid="oid-9", app_id="app-9", audience=COG)
    services = SimpleNamespace(identity=identity)
    assert (await verify_bearer(services, token, {COG + "/"})).oid == "oid-9"  # type: ignore[arg-type]
    assert (await verify_bearer(object(), token, {COG}, identity=identity)).appid == "app-9"  # type: ignore[arg-type]
    with pytest.raises(InvalidToken):
        await verify_bearer(services, token, tokens.MANAGEMENT_AUDIENCES)  # type: ignore[arg-type]
    with pytest.raises(RuntimeError):
        await verify_bearer(object(), token, {COG})  # type: ignore[arg-type]


async def test_issuer_of_another_tenant_is_rejected(keys, clock):
    """Even signed by our own key: `iss` must be the token's own tenant's."""
    token, _ = mint(keys, clock)
    claims = jwt.decode(token, options={"verify_signature": False})
    claims["iss"] = claims["iss"].replace(TENANT, "00000000-0000-0000-0000-0000000000ff")
    resigned = jwt.encode(claims, keys.active().private_key, algorithm="RS256", headers={"kid": keys.active().kid})
    assert reason(keys, resigned, clock.now).startswith("issuer ")
    claims["iss"] = "https://evil.example/"
    resigned = jwt.encode(claims, keys.active().private_key, algorithm="RS256", headers={"kid": keys.active().kid})
    assert reason(keys, resigned, clock.now).startswith("issuer ")
