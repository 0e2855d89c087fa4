"""Retention of personal data in Postgres: what ``crisis purge`` blanks, and after how long.

- ``calls.caller_phone``: after ``phone_days`` (from the call's ``occurred_at``), except while the
  call's follow-up is still open (a clinician still has to call back); ``person_ref`` stays, so a
  person's calls stay linked and every report keeps working.
- ``triage_decisions.override_reason`` (a dispatcher's free text, which may name people): after
  ``phone_days`` too; who overrode, who approved, from which route to which stay for the audit.
- ``dead_letters``: the original bytes and key (the whole rejected record, phone numbers included)
  after ``dead_letter_days``; reason, error and source stay.

Each purged row records when (``*_purged_at``), so a second run finds nothing to do: the purge is
idempotent and safe to run from cron as often as wanted. It needs only ``crisis_retention``'s
column grants (migration 004), never the worker's role or the owner's.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sinks.queries import connection


@dataclass(frozen=True)
class PurgeResult:
    """Rows blanked by one purge, per kind of personal data."""

    caller_phones: int
    override_reasons: int
    dead_letter_originals: int
    phones_kept_for_open_followups: int

    def as_dict(self) -> dict[str, int]:
        return {"caller_phones": self.caller_phones, "override_reasons": self.override_reasons,
                "dead_letter_originals": self.dead_letter_originals,
                "phones_kept_for_open_followups": self.phones_kept_for_open_followups}


def _count(status: str) -> int:
    """Rows affected, from asyncpg's command status (``UPDATE 12``)."""
    return int(status.rsplit(" ", 1)[-1])


async def purge_personal_data(database_url: str, phone_days: float, dead_letter_days: float,
                              now: datetime) -> PurgeResult:
    """Blank personal data older than its retention period, as of ``now``, in one transaction."""
    phones_before = now - timedelta(days=phone_days)
    letters_before = now - timedelta(days=dead_letter_days)
    async with connection(database_url) as conn, conn.transaction():
        open_followup = ("EXISTS (SELECT 1 FROM timers t WHERE t.kind = 'followup' AND t.call_id = c.call_id"
                         " AND t.next_deadline_at IS NOT NULL)")
        phones = _count(await conn.execute(
            "UPDATE calls c SET caller_phone = NULL, phone_purged_at = $2"
            f" WHERE caller_phone IS NOT NULL AND occurred_at < $1 AND NOT {open_followup}",
            phones_before, now))
        kept = int(await conn.fetchval(
            f"SELECT count(*) FROM calls c WHERE caller_phone IS NOT NULL AND occurred_at < $1 AND {open_followup}",
            phones_before))
        reasons = _count(await conn.execute(
            "UPDATE triage_decisions SET override_reason = NULL, reason_purged_at = $2"
            " WHERE override_reason IS NOT NULL AND decided_at < $1", phones_before, now))
        letters = _count(await conn.execute(
            "UPDATE dead_letters SET original_value = ''::bytea, original_key = NULL, source_key = NULL,"
            " original_purged_at = $2 WHERE original_purged_at IS NULL AND dead_lettered_at < $1",
            letters_before, now))
    return PurgeResult(phones, reasons, letters, kept)
