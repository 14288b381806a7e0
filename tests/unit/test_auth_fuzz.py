"""Fuzzing the data plane's credentials and the token parser (hypothesis): no 500s, no bypass.

Requests go byte by byte to an in-process Lapis (real SqlStore on a temp
SQLite, the demo account) with random and mutated `api-key` and
`Authorization` values, api-versions and Host headers. Properties:

    - the status is never 5xx;
    - 200 only when a credential is exactly a key of the account, or a bearer
      token that is, segment for segment, one Lapis signed for the right
      audience and an authorized principal (the signature compared as decoded
      bytes, since base64url spellings of one signature are one signature);
    - every body is JSON in one of Azure's shapes.

The verifier (lapis.identity.tokens.verify) is fuzzed on its own too: for any
string it returns claims only for a token Lapis signed for the audience, and
otherwise raises InvalidToken and nothing else.

Lapis trusts what it signed and does not compare `iss` (a token it signed under
another issuer base still passes): such a token counts as valid here.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import uuid
from urllib.parse import quote

import jwt
import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from hypothesis import HealthCheck, given, settings as hsettings, strategies as st

from lapis import demo, settings
from lapis.app import build_services, create_app
from lapis.identity import tokens
from lapis.services import DEFAULT_SUBSCRIPTION, DEFAULT_TENANT
from support.inprocess import ThreadedApp

COG = tokens.COGNITIVE_SERVICES
OPENAI_USER = "5e0bd9bd-7b93-4f28-af87-19fc36ad61bd"
ACCOUNT = (f"/subscriptions/{DEFAULT_SUBSCRIPTION}/resourceGroups/lapis-demo"
           "/providers/Microsoft.CognitiveServices/accounts/lapis-demo")
BODY = json.dumps({"messages": [{"role": "user", "content": "hi"}], "max_tokens": 5}).encode()
FUZZ = hsettings(max_examples=400, deadline=None, suppress_health_check=list(HealthCheck), database=None)


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64(text: str) -> bytes | None:
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except ValueError:
        return None


def signed(header: dict, claims: dict, sign) -> str:  # noqa: ANN001 - sign: bytes -> bytes
    head = b64(json.dumps(header).encode()) + "." + b64(json.dumps(claims).encode())
    return head + "." + b64(sign(head.encode()))


@pytest.fixture(scope="module")
def lapis(tmp_path_factory):
    home = tmp_path_factory.mktemp("fuzz")

    async def setup():  # noqa: ANN202
        conf = settings.load({"LAPIS_HOME": str(home), "LAPIS_RATELIMIT": "off", "LAPIS_METRICS": "off"})
        services = await build_services(conf)
        await demo.seed(services)
        return create_app(conf, services), services

    server = ThreadedApp(setup).start()
    services = server.state
    account = server.run(services.store.accounts())[0]
    oid, stranger = str(uuid.uuid4()), str(uuid.uuid4())
    assigned = server.send("PUT", f"{ACCOUNT}/providers/Microsoft.Authorization/roleAssignments/{uuid.uuid4()}"
                           "?api-version=2022-04-01", [(b"Authorization", f"Bearer {services.admin_token}".encode()),
                                                      (b"Content-Type", b"application/json")], json.dumps({
                               "properties": {"roleDefinitionId": f"/subscriptions/{DEFAULT_SUBSCRIPTION}/providers/"
                                              f"Microsoft.Authorization/roleDefinitions/{OPENAI_USER}",
                                              "principalId": oid, "principalType": "ServicePrincipal"}}).encode())
    assert assigned.status == 201, assigned.body
    keys = services.identity.keys
    key = keys.active()
    now = time.time()

    def issue(**kw) -> str:  # noqa: ANN003
        args = {"tenant": DEFAULT_TENANT, "subject_oid": oid, "app_id": str(uuid.uuid4()), "audience": COG,
                "issuer_base": services.settings.base_url, **kw}
        return tokens.issue(keys, **args)[0]

    good = issue()
    claims = jwt.decode(good, options={"verify_signature": False})
    attacker = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.public_key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    rs256 = {"alg": "RS256", "typ": "JWT", "kid": key.kid}

    def attacker_sign(data: bytes) -> bytes:
        return attacker.sign(data, padding.PKCS1v15(), hashes.SHA256())

    valid = {"good": good, "other issuer": issue(issuer_base="https://login.example.invalid")}
    signed_ok = {**valid, "stranger": issue(subject_oid=stranger)}  # signed right, but no role
    refused = {
        "expired": issue(now=now - 7200), "not yet": issue(now=now + 3600),
        "management": issue(audience="https://management.azure.com/"), "ai": issue(audience="https://ai.azure.com"),
        "no oid": issue(extra={"oid": 5}), "exp text": issue(extra={"exp": "9999999999"}),
        "forged": signed(rs256, claims, attacker_sign),
        "unknown kid": signed({**rs256, "kid": "nope"}, claims, attacker_sign),
        "alg none": signed({"alg": "none", "typ": "JWT", "kid": key.kid}, claims, lambda _: b""),
        "hs256 with the public key": signed({"alg": "HS256", "typ": "JWT", "kid": key.kid}, claims,
                                            lambda data: hmac.new(pem, data, hashlib.sha256).digest()),
        "kid a number": signed({"alg": "RS256", "kid": 7}, claims, attacker_sign),
        "alg a list": signed({"alg": ["RS256"], "kid": key.kid}, claims, attacker_sign),
    }
    yield {"server": server, "keys": (account.key1, account.key2), "valid": valid, "signed_ok": signed_ok,
           "refused": refused, "signing": keys}
    server.stop()


def same_token(presented: str, known: str) -> bool:
    """Header and payload spelled the same, and the same signature bytes."""
    parts, ref = presented.split("."), known.split(".")
    return len(parts) == 3 and parts[:2] == ref[:2] and unb64(parts[2]) is not None and \
        unb64(parts[2]) == unb64(ref[2])


# -- strategies ------------------------------------------------------------------

TEXT = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x2FFFF, exclude_categories=("Cs", "Cc"))
               | st.just("\t"), max_size=60)
B64URL = st.text(st.sampled_from("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"), max_size=80)


@st.composite
def mutated(draw, base: str) -> str:  # noqa: ANN001
    """One small edit of `base`: a changed, inserted or deleted character, a cut, a
    swapped or doubled segment, a case flip, padding or whitespace."""
    if not base:
        return draw(TEXT)
    i = draw(st.sampled_from(range(len(base))))
    parts = base.split(".")
    edits = [
        lambda: base[:i] + draw(st.characters(min_codepoint=0x21, max_codepoint=0x7E)) + base[i + 1:],
        lambda: base[:i] + draw(TEXT) + base[i:],
        lambda: base[:i] + base[i + 1:],
        lambda: base[:i],
        lambda: base + draw(st.sampled_from(["=", "==", ".", " ", "\t", "x", ".x"])),
        lambda: base[:i] + base[i].swapcase() + base[i + 1:],
        lambda: ".".join(reversed(parts)),
        lambda: ".".join(parts + parts[-1:]),
        lambda: ".".join(parts[:1] + [b64(json.dumps(draw(st.dictionaries(TEXT, TEXT | st.integers())))
                                          .encode())] + parts[2:]),
    ]
    return draw(st.sampled_from(edits))()


@st.composite
def credential(draw, lapis: dict) -> str:  # noqa: ANN001
    pool = [*lapis["keys"], *lapis["valid"].values(), *lapis["signed_ok"].values(), *lapis["refused"].values()]
    base = draw(st.sampled_from(lapis["keys"]) | st.sampled_from(list(lapis["valid"].values())) | st.sampled_from(pool))
    return draw(st.one_of(
        st.just(base), mutated(base), mutated(base), TEXT,
        st.builds(lambda a, b, c: f"{a}.{b}.{c}", B64URL, B64URL, B64URL),
        st.builds(lambda w1, w2: w1 + base + w2, st.sampled_from(["", " ", "\t", "\u3000"]),
                  st.sampled_from(["", " ", "\t", "\u00a0"])),
    ))


@st.composite
def request_case(draw, lapis: dict) -> dict:  # noqa: ANN001
    v1 = draw(st.booleans())
    form = draw(st.sampled_from(["path", "path", "host", "region"]))
    prefix = {"path": "/accounts/lapis-demo", "host": "", "region": "/regions/eastus"}[form]
    tail = "v1/chat/completions" if v1 else "deployments/gpt-4o-mini/chat/completions"
    target = f"{prefix}/openai/{tail}"
    known = ["v1", "preview", "latest"] if v1 else ["2024-10-21", "2024-02-01", "2025-04-01-preview"]
    version = draw(st.one_of(st.sampled_from(known), st.sampled_from(known), st.none(), TEXT))
    if version is not None:
        target += "?api-version=" + quote(version, safe="")
    headers: list[tuple[str, str]] = [("Content-Type", "application/json")]
    if form == "host" or draw(st.booleans()):
        host = "lapis-demo.openai.azure.com"
        headers.append(("Host", draw(st.one_of(st.just(host), st.just(host), mutated(host), TEXT))))
    api_key = draw(st.none() | credential(lapis))
    if api_key is not None:
        headers.append((draw(st.sampled_from(["api-key", "Api-Key", "API-KEY"])), api_key))
    authorization = draw(st.none() | credential(lapis))
    if authorization is not None:
        scheme = draw(st.sampled_from(["Bearer", "bearer", "BEARER", "Basic", "Token", "", "Bearer\t"]) | TEXT)
        authorization = scheme + draw(st.sampled_from([" ", "  ", "\t", ""])) + authorization
        headers.append(("Authorization", authorization))
    if model := (draw(st.sampled_from(["gpt-4o-mini", "nope"])) if v1 else None):
        body = json.dumps({"model": model, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 5}).encode()
    else:
        body = BODY
    return {"target": target, "headers": headers, "body": body, "v1": v1, "api_key": api_key,
            "authorization": authorization}


def may_pass(case: dict, lapis: dict) -> bool:
    """Whether some credential in the request is a real one."""
    keys = lapis["keys"]
    if case["api_key"] is not None and case["api_key"].strip() in keys:
        return True
    if case["authorization"] is None:
        return False
    scheme, _, rest = case["authorization"].strip().partition(" ")
    token = rest.strip()
    if scheme.lower() != "bearer":
        return False
    return (case["v1"] and token in keys) or any(same_token(token, t) for t in lapis["valid"].values())


def azure_shaped(reply) -> bool:  # noqa: ANN001
    body = reply.json()
    if reply.status == 200:
        return isinstance(body.get("choices"), list)
    error = body.get("error")
    if isinstance(error, dict):
        return isinstance(error.get("code"), str) and isinstance(error.get("message"), str)
    return isinstance(body.get("statusCode"), int) and isinstance(body.get("message"), str)


# -- tests ----------------------------------------------------------------------

def test_real_credentials_pass_and_the_near_misses_do_not(lapis):
    """The fixture's tokens are what they claim: the oracle below is not vacuous."""
    server = lapis["server"]
    target = "/accounts/lapis-demo/openai/deployments/gpt-4o-mini/chat/completions?api-version=2024-10-21"
    for name, token in {**lapis["valid"], **lapis["signed_ok"], **lapis["refused"]}.items():
        reply = server.send("POST", target, [(b"Authorization", f"Bearer {token}".encode())], BODY)
        expected = 200 if name in lapis["valid"] else 401
        assert reply.status == expected, (name, reply.body)
    assert server.send("POST", target, [(b"api-key", lapis["keys"][1].encode())], BODY).status == 200
    key = lapis["keys"][0]
    for near in (key[:-1], key + "0", key.upper(), key[:20], f"{key},{key}", key[1:] + key[0]):
        assert server.send("POST", target, [(b"api-key", near.encode())], BODY).status == 401, near


def test_fuzzed_credentials_never_500_never_bypass(lapis):
    server = lapis["server"]

    @FUZZ
    @given(request_case(lapis))
    def check(case: dict) -> None:
        headers = [(n.encode(), v.encode()) for n, v in case["headers"]]
        reply = server.send("POST", case["target"], headers, case["body"])
        assert reply.status < 500, (case, reply.body)
        assert reply.status != 200 or may_pass(case, lapis), (case, reply.body)
        assert azure_shaped(reply), (case, reply.status, reply.body)

    check()


@pytest.mark.parametrize("name", [b"api-key", b"Authorization"])
@pytest.mark.parametrize("value", [b"A" * 9000, b"Bearer " + b"x." * 6000, b"\x00key", b"k\x01ey", b"\xff\xfe\xfd",
                                   b"Bearer \x80\x81.\xc3\x28.\xed\xa0\x80", b"Bearer \xff.\xfe.\xfd"])
@pytest.mark.parametrize("v1", [False, True])
def test_raw_bytes_and_oversized_values_are_refused_not_crashed(lapis, name, value, v1):
    """Bytes that are not UTF-8, control characters, values past the header limit."""
    server = lapis["server"]
    target = "/accounts/lapis-demo/openai/" + ("v1/chat/completions" if v1 else
                                              "deployments/gpt-4o-mini/chat/completions?api-version=2024-10-21")
    body = json.dumps({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}).encode()
    reply = server.send("POST", target, [(name, value)], body)
    assert 400 <= reply.status < 500, (reply.status, reply.body[:200])


@pytest.mark.parametrize("value", [b"\xff\xfe\xfd", b"Bearer \xff.\xfe.\xfd", b"Bearer \x80\x81.\xc3\x28.\xed\xa0\x80",
                                   b"Bearer " + b"x" * 9000])
@pytest.mark.parametrize("target, name", [
    ("/subscriptions?api-version=2022-12-01", b"Authorization"),  # ARM
    ("/lapis/admin/stats", b"Authorization"),  # Lapis's admin API
    ("/msi/token?api-version=2019-08-01&resource=https://cognitiveservices.azure.com", b"X-IDENTITY-HEADER"),
])
def test_raw_bytes_on_the_other_surfaces(lapis, target, name, value):
    reply = lapis["server"].send("GET", target, [(name, value)])
    assert 400 <= reply.status < 500, (reply.status, reply.body[:200])


def test_the_verifier_raises_only_invalid_token(lapis):
    keys = lapis["signing"]
    accepted = list(lapis["signed_ok"].values())

    surrogates = st.text(st.characters(codec=None, categories=("Cs", "Ll", "Nd", "Po")), max_size=40)

    @hsettings(max_examples=400, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    @given(st.one_of(credential(lapis), TEXT, st.text(max_size=300), surrogates,
                     st.builds(lambda t, s: t + s, st.sampled_from(accepted), surrogates)))
    def check(token: str) -> None:
        try:
            claims = tokens.verify(keys, token, audiences=[COG])
        except tokens.InvalidToken:
            return
        assert any(same_token(token, t) for t in accepted), token
        assert claims.aud == COG

    check()
