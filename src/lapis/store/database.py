"""Database drivers behind one small interface, chosen by URL.

    sqlite:///path/to/file.sqlite3      SqliteDatabase (aiosqlite, WAL, synchronous=FULL)
    postgresql+asyncpg://user@host/db   PostgresDatabase (asyncpg pool)
    postgresql://...                    the same

Queries are written once with `?` placeholders; the PostgreSQL driver rewrites
them to `$1, $2, ...`. Every write goes through `transaction()`, so a crash
(even kill -9) leaves either all of a change or none of it.
"""

from __future__ import annotations

import asyncio
import re
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, AsyncIterator, Callable, Protocol, Sequence

Row = dict[str, Any]


class Connection(Protocol):
    async def execute(self, sql: str, *args: Any) -> int: ...  # rows affected
    async def fetch(self, sql: str, *args: Any) -> list[Row]: ...
    async def fetchrow(self, sql: str, *args: Any) -> Row | None: ...


class Database(Protocol):
    dialect: str

    def transaction(self) -> Any:  # async context manager yielding a Connection
        ...

    async def fetch(self, sql: str, *args: Any) -> list[Row]: ...
    async def fetchrow(self, sql: str, *args: Any) -> Row | None: ...
    async def notify(self, channel: str, payload: str) -> None: ...
    async def listen(self, channel: str, callback: Callable[[str], None]) -> None: ...
    async def close(self) -> None: ...


# --------------------------------------------------------------------------
# SQLite
# --------------------------------------------------------------------------

class _SqliteConn:
    def __init__(self, conn: Any):
        self._conn = conn

    async def execute(self, sql: str, *args: Any) -> int:
        cur = await self._conn.execute(sql, args)
        return cur.rowcount

    async def fetch(self, sql: str, *args: Any) -> list[Row]:
        cur = await self._conn.execute(sql, args)
        rows = await cur.fetchall()
        return [dict(r) for r in rows]

    async def fetchrow(self, sql: str, *args: Any) -> Row | None:
        cur = await self._conn.execute(sql, args)
        row = await cur.fetchone()
        return dict(row) if row is not None else None


class SqliteDatabase:
    """One aiosqlite connection; writes are serialised by a lock, as SQLite wants."""

    dialect = "sqlite"

    def __init__(self, conn: Any):
        self._conn = conn
        self._plain = _SqliteConn(conn)
        self._lock = asyncio.Lock()

    @classmethod
    async def open(cls, path: Path) -> "SqliteDatabase":
        import aiosqlite
        import sqlite3

        path.parent.mkdir(parents=True, exist_ok=True)
        conn = await aiosqlite.connect(str(path), isolation_level=None)
        conn.row_factory = sqlite3.Row
        for pragma in ("journal_mode=WAL", "synchronous=FULL", "foreign_keys=ON", "busy_timeout=5000"):
            await conn.execute(f"PRAGMA {pragma}")
        return cls(conn)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[_SqliteConn]:
        async with self._lock:
            await self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._plain
            except BaseException:
                await self._conn.execute("ROLLBACK")
                raise
            else:
                await self._conn.execute("COMMIT")

    async def fetch(self, sql: str, *args: Any) -> list[Row]:
        return await self._plain.fetch(sql, *args)

    async def fetchrow(self, sql: str, *args: Any) -> Row | None:
        return await self._plain.fetchrow(sql, *args)

    async def notify(self, channel: str, payload: str) -> None:
        """One process owns a SQLite file: there is nobody else to tell."""

    async def listen(self, channel: str, callback: Callable[[str], None]) -> None:
        """Nothing to hear on SQLite (see notify)."""

    async def close(self) -> None:
        await self._conn.close()


# --------------------------------------------------------------------------
# PostgreSQL
# --------------------------------------------------------------------------

_PLACEHOLDER = re.compile(r"\?")


def to_dollar_params(sql: str) -> str:
    """Rewrite `?` placeholders to asyncpg's `$n` (queries here hold no literal '?')."""
    counter = iter(range(1, 10_000))
    return _PLACEHOLDER.sub(lambda _m: f"${next(counter)}", sql)


class _PgConn:
    def __init__(self, conn: Any):
        self._conn = conn

    async def execute(self, sql: str, *args: Any) -> int:
        status = await self._conn.execute(to_dollar_params(sql), *args)
        tail = status.rsplit(" ", 1)[-1]
        return int(tail) if tail.isdigit() else 0

    async def fetch(self, sql: str, *args: Any) -> list[Row]:
        return [dict(r) for r in await self._conn.fetch(to_dollar_params(sql), *args)]

    async def fetchrow(self, sql: str, *args: Any) -> Row | None:
        row = await self._conn.fetchrow(to_dollar_params(sql), *args)
        return dict(row) if row is not None else None


class PostgresDatabase:
    dialect = "postgresql"

    def __init__(self, pool: Any, dsn: str = ""):
        self._pool = pool
        self._dsn = dsn
        self._listener: Any = None

    @classmethod
    async def open(cls, dsn: str) -> "PostgresDatabase":
        import asyncpg

        pool = await asyncpg.create_pool(dsn, min_size=1, max_size=8)
        return cls(pool, dsn)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[_PgConn]:
        async with self._pool.acquire() as conn:
            async with conn.transaction():
                yield _PgConn(conn)

    async def fetch(self, sql: str, *args: Any) -> list[Row]:
        async with self._pool.acquire() as conn:
            return await _PgConn(conn).fetch(sql, *args)

    async def fetchrow(self, sql: str, *args: Any) -> Row | None:
        async with self._pool.acquire() as conn:
            return await _PgConn(conn).fetchrow(sql, *args)

    async def notify(self, channel: str, payload: str) -> None:
        """Tell every replica listening on `channel` (after the change committed)."""
        async with self._pool.acquire() as conn:
            await conn.execute("SELECT pg_notify($1, $2)", channel, payload)

    async def listen(self, channel: str, callback: Callable[[str], None]) -> None:
        """Call `callback(payload)` for each notification, on a connection of its own."""
        import asyncpg

        if self._listener is None:
            self._listener = await asyncpg.connect(self._dsn)
        await self._listener.add_listener(channel, lambda _conn, _pid, _chan, payload: callback(payload))

    async def close(self) -> None:
        if self._listener is not None:
            await self._listener.close()
        await self._pool.close()


async def open_database(url: str) -> SqliteDatabase | PostgresDatabase:
    """Open the database a URL names (see the module docstring)."""
    if url.startswith("sqlite:///"):
        return await SqliteDatabase.open(Path(url[len("sqlite:///"):]))
    if url.startswith(("postgresql+asyncpg://", "postgresql://", "postgres://")):
        dsn = url.replace("postgresql+asyncpg://", "postgresql://", 1)
        return await PostgresDatabase.open(dsn)
    raise ValueError(f"unsupported database URL: {url!r} (use sqlite:///… or postgresql+asyncpg://…)")


def placeholders(values: Sequence[Any]) -> str:
    return ", ".join("?" for _ in values)
