"""Plain numbered SQL migrations, applied once each, safe to run twice or from two workers at once."""

from __future__ import annotations

import logging
from importlib import resources

import asyncpg

log = logging.getLogger(__name__)

# Any constant works: it serialises concurrent `crisis migrate` runs on the same database.
MIGRATION_LOCK_ID = 7_311_911


def migration_files() -> list[tuple[int, str, str]]:
    """(version, name, sql) for every ``NNN_name.sql`` shipped in ``sinks/migrations``, in order."""
    found = []
    for entry in resources.files("sinks.migrations").iterdir():
        if entry.name.endswith(".sql"):
            version = int(entry.name.split("_", 1)[0])
            found.append((version, entry.name, entry.read_text(encoding="utf-8")))
    return sorted(found)


class MigrationPrivilegeError(RuntimeError):
    """Migrations are pending but this role may not apply them (the worker's least-privilege role)."""


async def pending_migrations(conn: asyncpg.Connection, up_to: int | None = None) -> list[str]:
    """Names of the migrations not applied yet (up to version ``up_to``), found with reads only."""
    wanted = [(version, name) for version, name, _ in migration_files() if up_to is None or version <= up_to]
    if await conn.fetchval("SELECT to_regclass('schema_migrations')") is None:
        return [name for _, name in wanted]
    done = {row["version"] for row in await conn.fetch("SELECT version FROM schema_migrations")}
    return [name for version, name in wanted if version not in done]


async def migrate(database_url: str, up_to: int | None = None) -> list[str]:
    """Apply pending migrations (up to version ``up_to``, default all); returns the names applied.

    An up-to-date database needs only reads, so a worker running as ``crisis_worker`` (no DDL) starts
    normally; with migrations pending it stops with ``MigrationPrivilegeError``, naming them.
    """
    conn = await asyncpg.connect(database_url)
    try:
        if not await pending_migrations(conn, up_to):
            return []
        try:
            return await _apply(conn, up_to)
        except asyncpg.InsufficientPrivilegeError as exc:
            pending = await pending_migrations(conn, up_to)
            raise MigrationPrivilegeError(
                f"migrations {', '.join(pending)} are pending and this database role may not apply them ({exc}): "
                "run `crisis migrate` with the owner's DATABASE_URL first") from exc
    finally:
        await conn.close()


async def _apply(conn: asyncpg.Connection, up_to: int | None) -> list[str]:
    """Apply what is pending under the advisory lock; each migration is one transaction."""
    await conn.execute("SELECT pg_advisory_lock($1)", MIGRATION_LOCK_ID)
    try:
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            " version integer PRIMARY KEY, name text NOT NULL,"
            " applied_at timestamptz NOT NULL DEFAULT now())"
        )
        done = {row["version"] for row in await conn.fetch("SELECT version FROM schema_migrations")}
        applied = []
        for version, name, sql in migration_files():
            if version in done or (up_to is not None and version > up_to):
                continue
            async with conn.transaction():
                await conn.execute(sql)
                await conn.execute(
                    "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)", version, name
                )
            log.info("applied migration %s", name)
            applied.append(name)
        return applied
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", MIGRATION_LOCK_ID)
