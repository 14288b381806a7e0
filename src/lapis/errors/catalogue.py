"""The catalogue: one factory per Azure error, data plane and ARM.

Bodies are rendered once, to the exact bytes Azure sends. Where Azure's own
bytes have a quirk (the space after `"message":` in the gateway's 404, for
instance) the body is written out literally. Sources are the sections of
shared/docs/azure-wire-reference.md named in each docstring; where no capture
exists the choice is marked "Lapis's choice".

The factories live in one module per surface (dataplane, arm, oauth, rbac)
on top of `base`; this module gathers them, so callers keep writing
`errors.deployment_not_found()` after `from lapis.errors import catalogue as errors`.
"""

from lapis.errors.arm import *  # noqa: F401,F403
from lapis.errors.base import ApiError, arm  # noqa: F401
from lapis.errors.budgets import *  # noqa: F401,F403
from lapis.errors.dataplane import *  # noqa: F401,F403
from lapis.errors.oauth import *  # noqa: F401,F403
from lapis.errors.rbac import *  # noqa: F401,F403
from lapis.errors.upstream import *  # noqa: F401,F403
