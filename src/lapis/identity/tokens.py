"""Access tokens: RS256 JWTs shaped like Entra ID v2.0 tokens, and their check.

    issue(keys, tenant=, subject_oid=, app_id=, audience=, issuer_base=)  -> (jwt, expires_on)
    verify(keys, jwt, audiences={...})                                    -> Claims | InvalidToken

Audiences are compared after `normalize_audience`: "/.default" stripped,
trailing slashes ignored, case folded. So a token for
`https://cognitiveservices.azure.com` satisfies a check for
`https://cognitiveservices.azure.com/`, and a scope written with a double
slash (`https://management.core.windows.net//.default`) names the same
resource as the single-slash form.

Errors:
    InvalidToken(reason)    the token is malformed, unsigned by a key we publish,
                            expired, not yet valid, or for another audience
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping

import jwt

from lapis.identity.signing import SigningKeys

COGNITIVE_SERVICES = "https://cognitiveservices.azure.com"
MANAGEMENT_AUDIENCES = ("https://management.azure.com/", "https://management.core.windows.net/")
AZURE_CLI_APP_ID = "04b07795-8ddb-461a-bbee-02f9e1bf7b46"  # the app id Entra puts in az's tokens

# Resource URI (normalized) -> the `aud` Entra writes for it.
KNOWN_RESOURCES = {
    "https://cognitiveservices.azure.com": COGNITIVE_SERVICES,
    "https://ai.azure.com": "https://ai.azure.com",
    "https://management.azure.com": "https://management.azure.com/",
    "https://management.core.windows.net": "https://management.core.windows.net/",
}


class InvalidToken(Exception):
    """Why a token was refused (for logs; callers answer with one fixed 401 body)."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Claims:
    """The claims a verified token carries; `raw` holds all of them."""

    oid: str
    tid: str
    appid: str
    aud: str
    iss: str
    exp: int
    nbf: int
    iat: int
    sub: str = ""
    raw: Mapping[str, Any] = field(default_factory=dict)


def normalize_audience(value: str) -> str:
    """Strip "/.default" and trailing slashes, fold case: the key audiences are compared on."""
    text = value.strip()
    if text.lower().endswith("/.default"):
        text = text[: -len("/.default")]
    return text.rstrip("/").lower()


def resource_audience(resource_or_scope: str) -> str | None:
    """The `aud` Entra issues for a resource or `.default` scope; None for a resource Lapis does not serve."""
    return KNOWN_RESOURCES.get(normalize_audience(resource_or_scope))


def issuer(issuer_base: str, tenant: str) -> str:
    return f"{issuer_base.rstrip('/')}/{tenant}/v2.0"


def issue(keys: SigningKeys, *, tenant: str, subject_oid: str, app_id: str, audience: str, issuer_base: str,
          lifetime_s: int = 3599, now: float | None = None, extra: Mapping[str, Any] | None = None) -> tuple[str, int]:
    """Sign a v2.0 access token with the active key; returns (jwt, expires_on epoch seconds)."""
    key = keys.active()
    if key is None:
        raise RuntimeError("no active signing key (use SigningKeys.load_or_create)")
    iat = int(time.time() if now is None else now)
    exp = iat + lifetime_s
    claims: dict[str, Any] = {
        "aud": audience, "iss": issuer(issuer_base, tenant), "iat": iat, "nbf": iat, "exp": exp,
        "aio": uuid.uuid4().hex, "appid": app_id, "appidacr": "1", "azp": app_id, "azpacr": "1",
        "idp": issuer(issuer_base, tenant), "oid": subject_oid, "sub": subject_oid, "tid": tenant,
        "uti": uuid.uuid4().hex[:22], "ver": "2.0",
    }
    claims.update(extra or {})
    token = jwt.encode(claims, key.private_key, algorithm="RS256", headers={"kid": key.kid, "typ": "JWT"})
    return token, exp


def unverified_kid(token: str) -> str:
    """The kid in a token's header, without checking anything else."""
    try:
        header = jwt.get_unverified_header(token)
    except (jwt.PyJWTError, UnicodeError) as exc:  # UnicodeError: header bytes that were not UTF-8
        raise InvalidToken(f"malformed token: {exc}") from None
    kid = header.get("kid")
    if not isinstance(kid, str) or not kid:
        raise InvalidToken("token header has no kid")
    if header.get("alg") != "RS256":
        raise InvalidToken(f"unsupported alg {header.get('alg')!r}")
    return kid


def _int_claim(claims: Mapping[str, Any], name: str) -> int:
    value = claims.get(name)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InvalidToken(f"claim {name!r} missing or not a number")
    return int(value)


def verify(keys: SigningKeys, token: str, *, audiences: Iterable[str], now: float | None = None,
           leeway_s: float = 0.0) -> Claims:
    """Check signature, kid, lifetime and audience; the claims, or InvalidToken(reason)."""
    kid = unverified_kid(token)
    key = keys.lookup(kid)
    if key is None:
        raise InvalidToken(f"unknown signing key {kid!r}")
    try:
        claims = jwt.decode(token, key.public_key, algorithms=["RS256"],
                            options={"verify_aud": False, "verify_exp": False, "verify_nbf": False,
                                     "verify_iat": False, "verify_iss": False})
    except jwt.InvalidSignatureError:
        raise InvalidToken("bad signature") from None
    except jwt.PyJWTError as exc:
        raise InvalidToken(f"malformed token: {exc}") from None
    moment = time.time() if now is None else now
    exp, nbf = _int_claim(claims, "exp"), _int_claim(claims, "nbf")
    if moment >= exp + leeway_s:
        raise InvalidToken("token expired")
    if moment < nbf - leeway_s:
        raise InvalidToken("token not yet valid")
    aud = claims.get("aud")
    wanted = {normalize_audience(a) for a in audiences}
    if not isinstance(aud, str) or normalize_audience(aud) not in wanted:
        raise InvalidToken(f"wrong audience {aud!r}")
    for name in ("oid", "tid"):
        if not isinstance(claims.get(name), str):
            raise InvalidToken(f"claim {name!r} missing")
    # The issuer must be the token's own tenant's (`{base}/{tid}/v2.0`). The
    # base is not compared: replicas may be reached under different URLs.
    if not str(claims.get("iss") or "").endswith(f"/{claims['tid']}/v2.0"):
        raise InvalidToken(f"issuer {claims.get('iss')!r} is not tenant {claims['tid']!r}'s")
    return Claims(oid=claims["oid"], tid=claims["tid"], appid=str(claims.get("appid") or claims.get("azp") or ""),
                  aud=aud, iss=str(claims.get("iss") or ""), exp=exp, nbf=nbf,
                  iat=int(claims.get("iat") or nbf), sub=str(claims.get("sub") or ""), raw=claims)
