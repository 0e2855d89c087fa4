"""The type of a Postgres connection our SQL runs on: a plain one, or one lent by a pool."""

from __future__ import annotations

from typing import TYPE_CHECKING, TypeAlias

if TYPE_CHECKING:  # generic in the stubs only
    import asyncpg

    Connection: TypeAlias = asyncpg.Connection[asyncpg.Record] | asyncpg.pool.PoolConnectionProxy[asyncpg.Record]
