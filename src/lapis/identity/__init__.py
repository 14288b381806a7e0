"""Identity: an Entra-like token service, managed identity, service principals.

    signing.py      RSA signing keys in the database, rotation, the JWKS
    tokens.py       issue and verify RS256 access tokens (audience rules)
    principals.py   service principals and managed identities (store)
    service.py      Identity: who gets a token; setup_identity(); verify_bearer()
    routes.py       OIDC discovery, token endpoint, managed-identity endpoints, admin API
"""

from lapis.identity.service import Identity, setup_identity, verify_bearer
from lapis.identity.tokens import Claims, InvalidToken

__all__ = ["Claims", "Identity", "InvalidToken", "setup_identity", "verify_bearer"]
