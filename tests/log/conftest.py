"""The PostgreSQL the log tests use: a database of the session's own, a schema per test.

The server is ``TOKENWARD_TEST_PG`` (default ``postgresql://postgres@127.0.0.1:5432/postgres``);
tests that need it are skipped when it cannot be reached (failed on CI).
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from urllib.parse import quote

import pytest

ADMIN_DSN = os.environ.get("TOKENWARD_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")


@pytest.fixture(scope="session")
def database() -> Iterator[str]:
    psycopg = pytest.importorskip("psycopg")
    try:
        admin = psycopg.connect(ADMIN_DSN, autocommit=True, connect_timeout=3)
    except psycopg.OperationalError as exc:
        if os.environ.get("CI"):
            pytest.fail(f"PostgreSQL is not reachable at {ADMIN_DSN}: {exc}")
        pytest.skip(f"PostgreSQL is not reachable at {ADMIN_DSN}")
    name = f"tokenward_test_{os.getpid()}_{secrets.token_hex(4)}"
    admin.execute(f'CREATE DATABASE "{name}"')
    base, _, _ = ADMIN_DSN.rpartition("/")
    try:
        yield f"{base}/{name}"
    finally:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


@pytest.fixture
def dsn(database: str) -> str:
    """A DSN whose tables land in a schema of this test's own."""
    import psycopg

    schema = f"t_{secrets.token_hex(6)}"
    with psycopg.connect(database, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    return f"{database}?options={quote(f'-csearch_path={schema}')}"
