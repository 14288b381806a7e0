"""Shared fixtures: a real Lapis server process, and ways to talk to it.

Tests that need timing, streaming or real clients run against `lapis_server`,
a `python -m lapis serve --demo` child process on a free loopback port with
its own LAPIS_HOME. The store is SQLite unless LAPIS_TEST_DATABASE_URL says
otherwise.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "tests"))

from support.server import LapisProcess, start_server  # noqa: E402


@pytest.fixture(scope="session")
def lapis_server(tmp_path_factory: pytest.TempPathFactory) -> LapisProcess:
    server = start_server(tmp_path_factory.mktemp("lapis-home"), demo=True)
    yield server
    server.stop()


@pytest.fixture(scope="session")
def demo(lapis_server: LapisProcess) -> dict[str, str]:
    """The four variables the README tells a newcomer to export."""
    return lapis_server.demo_env()


@pytest.fixture()
def fresh_server(tmp_path: Path) -> LapisProcess:
    """A server of its own, for tests that restart or kill it."""
    server = start_server(tmp_path / "home", demo=False)
    yield server
    server.stop()


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh, empty database of each kind Lapis supports."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'lapis.sqlite3'}"
        return
    from support.databases import create_database, drop_database

    name, url = create_database()
    yield url
    drop_database(name)
