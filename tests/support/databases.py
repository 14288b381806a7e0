"""Throwaway PostgreSQL databases on the local server (127.0.0.1:5432).

Each test session gets databases of its own, created here and dropped at the
end, so runs never see each other's rows. The server must be up: .ci/run
starts it; a test that needs it fails loudly when it is down.
"""

from __future__ import annotations

import asyncio
import os
import uuid

ADMIN_DSN = os.environ.get("LAPIS_TEST_POSTGRES_ADMIN", "postgresql://postgres@127.0.0.1:5432/postgres")


async def _run(sql: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(ADMIN_DSN)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


def create_database() -> tuple[str, str]:
    """(name, SQLAlchemy-style URL Lapis accepts) of a new empty database."""
    name = f"lapis_test_{uuid.uuid4().hex[:12]}"
    asyncio.run(_run(f'CREATE DATABASE "{name}"'))
    base = ADMIN_DSN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://", 1)
    return name, f"{base}/{name}"


def drop_database(name: str) -> None:
    asyncio.run(_run(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
