"""Login users in the least-privilege roles of migration 004 (``crisis_worker``, ``crisis_reader``, ...).

A deployment creates its logins once, as an administrator (``deploy/postgres/init/10-roles.sh`` in
the compose stack); tests and the fault-injection suite do it with ``ensure_login``. Names and
passwords are quoted by the server (``format('%I', '%L')``), never pasted into SQL.
"""

from __future__ import annotations

from sinks.queries import connection

GROUP_ROLES = ("crisis_worker", "crisis_reader", "crisis_auditor", "crisis_retention")


async def ensure_login(admin_url: str, user: str, password: str, group: str) -> None:
    """Create (or update) login ``user`` with ``password`` as a member of ``group`` (one of ``GROUP_ROLES``)."""
    if group not in GROUP_ROLES:
        raise ValueError(f"{group!r} is not one of the pipeline's roles {GROUP_ROLES}")
    async with connection(admin_url) as conn:
        exists = await conn.fetchval("SELECT 1 FROM pg_roles WHERE rolname = $1", user)
        template = "ALTER ROLE %I LOGIN PASSWORD %L" if exists else "CREATE ROLE %I LOGIN PASSWORD %L"
        await conn.execute(await conn.fetchval("SELECT format($1::text, $2::text, $3::text)", template, user, password))
        await conn.execute(await conn.fetchval("SELECT format('GRANT %I TO %I', $1::text, $2::text)", group, user))
