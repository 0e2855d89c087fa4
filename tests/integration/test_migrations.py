"""Migrations: safe to run twice and from two workers starting at the same moment."""

from __future__ import annotations

import asyncio
import uuid

import asyncpg
import pytest

from crisis.services import create_database, drop_database
from sinks.migrate import migrate, migration_files
from tests.conftest import with_database

pytestmark = pytest.mark.integration


async def test_concurrent_and_repeated_migrations_apply_each_file_once(postgres_admin_url):
    name = f"crisis_migrate_{uuid.uuid4().hex[:8]}"
    await create_database(postgres_admin_url, name)
    url = with_database(postgres_admin_url, name)
    try:
        first, second = await asyncio.gather(migrate(url), migrate(url))
        every = [file_name for _, file_name, _ in migration_files()]
        assert sorted(first + second) == sorted(every)
        assert await migrate(url) == []
        conn = await asyncpg.connect(url)
        try:
            assert await conn.fetchval("SELECT count(*) FROM schema_migrations") == len(every)
        finally:
            await conn.close()
    finally:
        await drop_database(postgres_admin_url, name)
