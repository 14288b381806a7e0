"""Errors: one catalogue of every Azure error Lapis can answer with.

Services raise `ApiError` values made by the named factories in
`lapis.errors.catalogue`; nobody builds an error body by hand. Each factory
fixes the status, the exact body bytes and any extra headers, taken from
`shared/docs/azure-wire-reference.md` (the section is named beside each one).

Hierarchy:
    ApiError            an answer Lapis gives on purpose (4xx, 503, ...)
    anything else       a bug: the app middleware turns it into Azure's 500
                        body carrying the request id (catalogue.internal_error)
"""

from lapis.errors.catalogue import ApiError

__all__ = ["ApiError"]
