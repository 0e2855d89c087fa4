"""Database lifecycle for the demo, the benchmark, the fault scenarios and the tests: one fresh database each."""

from __future__ import annotations

import asyncpg


def _quoted(name: str) -> str:
    """A database name as a quoted identifier (ours are generated, but a quote must never end it)."""
    return '"' + name.replace('"', '""') + '"'


async def create_database(admin_url: str, name: str) -> None:
    """``CREATE DATABASE name`` on the server of ``admin_url`` (a role allowed to create databases)."""
    conn = await asyncpg.connect(admin_url)
    try:
        await conn.execute(f"CREATE DATABASE {_quoted(name)}")
    finally:
        await conn.close()


async def drop_database(admin_url: str, name: str) -> None:
    """Drop ``name`` if it exists, closing its remaining connections (a killed worker's)."""
    conn = await asyncpg.connect(admin_url)
    try:
        await conn.execute(f"DROP DATABASE IF EXISTS {_quoted(name)} WITH (FORCE)")
    finally:
        await conn.close()
