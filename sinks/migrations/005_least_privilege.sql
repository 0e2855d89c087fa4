-- Least privilege. Four NOLOGIN roles; a deployment creates login users in them
-- (deploy/postgres/init/10-roles.sh; README "PostgreSQL: roles, TLS, high availability"):
--
--   crisis_worker     the pipeline: reads and writes its own tables, no DELETE, no DDL, no other schema
--   crisis_reader     reports and partners: views without personal data only
--   crisis_auditor    who overrode which decision (override_audit, with the dispatcher's free text)
--   crisis_retention  `crisis purge`: may blank personal-data columns, nothing else
--
-- The tables belong to the role that runs the migrations (an owner, never the worker: an owner may
-- drop what it owns). A later migration adding a table grants it here explicitly: nothing is
-- granted by default.
-- Roles are cluster-wide: another database on the same server may have created them already.

DO $$
DECLARE
    name text;
BEGIN
    FOREACH name IN ARRAY ARRAY['crisis_worker', 'crisis_reader', 'crisis_auditor', 'crisis_retention'] LOOP
        IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = name) THEN
            BEGIN
                EXECUTE format('CREATE ROLE %I NOLOGIN', name);
            EXCEPTION WHEN duplicate_object OR unique_violation THEN
                NULL;  -- created by a migration of another database at the same moment
            END;
        END IF;
    END LOOP;
END $$;

-- No one but the owner creates anything here. PostgreSQL 15+ already refuses CREATE on public to
-- PUBLIC; servers upgraded from older versions (and some managed services) still allow it.
REVOKE CREATE ON SCHEMA public FROM PUBLIC;
DO $$
BEGIN
    -- Temporary tables are DDL too; the pipeline needs none.
    EXECUTE format('REVOKE TEMPORARY ON DATABASE %I FROM PUBLIC', current_database());
END $$;
GRANT USAGE ON SCHEMA public TO crisis_worker, crisis_reader, crisis_auditor, crisis_retention;

-- The worker: exactly the statements of sinks/postgres.py (INSERT ... ON CONFLICT ... RETURNING,
-- SELECT ... FOR UPDATE, UPDATE timers) and the migration check at start.
GRANT SELECT, INSERT ON calls, triage_decisions, call_events, timer_events, dead_letters TO crisis_worker;
GRANT SELECT, INSERT, UPDATE ON timers TO crisis_worker;
GRANT SELECT ON schema_migrations TO crisis_worker;
-- Outcomes (004): facts and daily counts kept in the batch's transaction (sinks/aggregates.py), the
-- feed's outbox (sinks/outcome_feed.py): insert-or-update, never delete.
GRANT SELECT, INSERT, UPDATE ON outcome_calls, outcome_daily, outcome_days, outcome_feed TO crisis_worker;

-- Retention (`crisis purge`): blank personal data after its retention period, and record when.
ALTER TABLE calls ADD COLUMN phone_purged_at timestamptz;
ALTER TABLE triage_decisions ADD COLUMN reason_purged_at timestamptz;
ALTER TABLE dead_letters ADD COLUMN original_purged_at timestamptz;
GRANT SELECT (call_id, occurred_at, caller_phone, phone_purged_at), UPDATE (caller_phone, phone_purged_at)
    ON calls TO crisis_retention;
GRANT SELECT (event_id, decided_at, override_reason, reason_purged_at), UPDATE (override_reason, reason_purged_at)
    ON triage_decisions TO crisis_retention;
GRANT SELECT (event_id, dead_lettered_at, original_purged_at),
      UPDATE (original_value, original_key, source_key, original_purged_at)
    ON dead_letters TO crisis_retention;
GRANT SELECT (kind, call_id, next_deadline_at) ON timers TO crisis_retention;

-- What reports and partners read: no phone number, no free text, no original bytes.
CREATE VIEW report_calls AS
SELECT call_id, occurred_at, center_id, nature_code, mpds_code, concerns, safety_flags, person_in_crisis_is_caller,
       juvenile, district, person_ref, stored_at
FROM calls;

CREATE VIEW report_decisions AS
SELECT event_id, type, call_id, decided_at, route, reasons, policy_name, policy_version, second_response_requested,
       center_id, district, person_ref, safety_flags, previous_route, overridden_by, approved_by, approved_by_role,
       stored_at
FROM triage_decisions;

CREATE VIEW report_call_events AS
SELECT event_id, call_id, type, occurred_at, unit_id, unit_type, disposition, attempt_result, attempted_by, channel,
       linkage, completed_by, stored_at
FROM call_events;

CREATE VIEW report_dead_letters AS
SELECT event_id, source_topic, source_partition, source_offset, reason, dead_lettered_at
FROM dead_letters;

GRANT SELECT ON report_calls, report_decisions, report_call_events, report_dead_letters, partner_current_triage,
    sla_timers, sla_events, followups, followup_events TO crisis_reader;
-- `crisis report` (sinks/outcome_queries.py): counts, per-call facts (pseudonymous person_ref only, to
-- count repeat contacts; no phone, name or address), and its own audit row.
GRANT SELECT ON outcome_daily, outcome_calls TO crisis_reader;
GRANT SELECT, INSERT, UPDATE ON report_runs TO crisis_reader;
GRANT USAGE ON SEQUENCE report_runs_id_seq TO crisis_reader;

-- Audit: every override applied (who, approved by whom in which role, from which route to which,
-- when, and the dispatcher's reason) and every one refused because it lowered police involvement on
-- a call with a safety flag without an allowed approver (read from the dead letter while its
-- original bytes are kept, CRISIS_DEAD_LETTER_RETENTION_DAYS).
CREATE VIEW override_audit AS
SELECT 'applied' AS outcome, d.decided_at AS overridden_at, d.stored_at AS recorded_at, d.call_id,
       d.source_event_id AS override_event_id, d.overridden_by, d.approved_by, d.approved_by_role,
       d.previous_route AS from_route, d.route AS to_route, d.safety_flags, d.override_reason AS reason,
       NULL::text AS refusal
FROM triage_decisions d
WHERE d.type = 'triage.overridden'
UNION ALL
SELECT 'refused', (o.body->>'occurred_at')::timestamptz, l.dead_lettered_at, o.body->>'call_id', o.body->>'event_id',
       o.body->>'overridden_by', o.body->>'approved_by', o.body->>'approved_by_role', NULL, o.body->>'route', NULL,
       o.body->>'reason', l.error
FROM dead_letters l
CROSS JOIN LATERAL (SELECT convert_from(l.original_value, 'UTF8')::jsonb AS body) o
WHERE l.reason = 'override_refused' AND l.original_purged_at IS NULL;

GRANT SELECT ON override_audit TO crisis_auditor;
-- ... and who ran which report over which range.
GRANT SELECT ON report_runs TO crisis_auditor;
