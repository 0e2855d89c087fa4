-- One durable timer table and one emitted-event table for every timer kind (co-responder arrival
-- SLA, follow-ups, and later ones). A kind's state is JSON that only its domain module reads; the
-- pipeline needs just the key, the partition and the next deadline. JSON, not JSONB: written on
-- every batch, read whole, rarely searched (about a third cheaper to write here).
-- Running SLA timers move over unchanged: same state, same deadlines, same event ids.

SET LOCAL TimeZone = 'UTC';  -- timestamps in the JSON state are written as ISO 8601 in UTC

CREATE TABLE timers (
    kind             text NOT NULL,
    call_id          text NOT NULL,
    seq              integer NOT NULL DEFAULT 0,  -- a call's next timer of the same kind (a new request)
    partition        integer NOT NULL,            -- the call's partition on crisis.calls.v1
    state            json NOT NULL,
    next_deadline_at timestamptz,                 -- NULL once stopped: the partial indexes hold running timers only
    failed_reason    text,                        -- set when the kind's code failed on this timer (never retried)
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (call_id, kind, seq)  -- call first: a batch reads every timer of its calls
);
CREATE INDEX timers_due ON timers (next_deadline_at) WHERE next_deadline_at IS NOT NULL;
CREATE INDEX timers_partition_due ON timers (partition, next_deadline_at) WHERE next_deadline_at IS NOT NULL;

INSERT INTO timers (kind, call_id, seq, partition, state, next_deadline_at, created_at, updated_at)
SELECT 'sla_arrival', call_id, 0, partition,
       json_build_object(
           'call_id', call_id, 'response', response, 'requested_at', requested_at, 'warning_at', warning_at,
           'breach_at', breach_at, 'district', district, 'warned', warned, 'breached', breached,
           'dispatched_at', dispatched_at, 'arrived_at', arrived_at, 'closed_at', closed_at),
       next_deadline_at, updated_at, updated_at
FROM sla_timers;
DROP TABLE sla_timers;

-- Every event a timer emitted (published on its partner topic), keyed by its deterministic id.
CREATE TABLE timer_events (
    event_id    text PRIMARY KEY,
    kind        text NOT NULL,
    type        text NOT NULL,
    call_id     text NOT NULL,
    occurred_at timestamptz NOT NULL,
    payload     json NOT NULL,  -- the event as published
    stored_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX timer_events_call ON timer_events (call_id);

INSERT INTO timer_events (event_id, kind, type, call_id, occurred_at, payload, stored_at)
SELECT event_id, 'sla_arrival', type, call_id, occurred_at,
       json_build_object(
           'type', type, 'event_id', event_id, 'call_id', call_id, 'response', response,
           'requested_at', requested_at, 'deadline_at', deadline_at, 'occurred_at', occurred_at,
           'arrival_seconds', arrival_seconds, 'district', district),
       stored_at
FROM sla_events;
DROP TABLE sla_events;

-- The familiar shapes, for people and reports.
CREATE VIEW sla_timers AS
SELECT call_id, seq, state->>'response' AS response,
       (state->>'requested_at')::timestamptz AS requested_at, (state->>'warning_at')::timestamptz AS warning_at,
       (state->>'breach_at')::timestamptz AS breach_at, partition, state->>'district' AS district,
       (state->>'warned')::boolean AS warned, (state->>'breached')::boolean AS breached,
       (state->>'dispatched_at')::timestamptz AS dispatched_at, (state->>'arrived_at')::timestamptz AS arrived_at,
       (state->>'closed_at')::timestamptz AS closed_at, next_deadline_at, failed_reason, updated_at
FROM timers WHERE kind = 'sla_arrival';

CREATE VIEW sla_events AS
SELECT event_id, type, call_id, payload->>'response' AS response,
       (payload->>'requested_at')::timestamptz AS requested_at, (payload->>'deadline_at')::timestamptz AS deadline_at,
       occurred_at, (payload->>'arrival_seconds')::double precision AS arrival_seconds,
       payload->>'district' AS district, stored_at
FROM timer_events WHERE kind = 'sla_arrival';

-- Follow-ups: one row per contact's schedule, its history in `state` (attempts with their results).
CREATE VIEW followups AS
SELECT call_id, seq, state->>'contact' AS contact, (state->>'contact_ended_at')::timestamptz AS contact_ended_at,
       state->>'disposition' AS disposition, state->>'status' AS status,
       json_array_length(state->'attempts') AS attempts_made,
       (state->>'reached_at')::timestamptz AS reached_at, (state->>'ended_at')::timestamptz AS ended_at,
       state->>'linkage' AS linkage, state->>'person_ref' AS person_ref, state->>'district' AS district,
       state->>'center_id' AS center_id, next_deadline_at, failed_reason, updated_at
FROM timers WHERE kind = 'followup';

CREATE VIEW followup_events AS
SELECT event_id, type, call_id, payload->>'contact' AS contact,
       (payload->>'contact_ended_at')::timestamptz AS contact_ended_at, occurred_at,
       (payload->>'attempt_number')::integer AS attempt_number, (payload->>'due_at')::timestamptz AS due_at,
       (payload->>'attempts_made')::integer AS attempts_made, payload->>'linkage' AS linkage,
       (payload->>'days_from_contact')::double precision AS days_from_contact,
       payload->>'person_ref' AS person_ref, payload->>'district' AS district, stored_at
FROM timer_events WHERE kind = 'followup';

-- Follow-up attempts and completions are lifecycle events of the call, stored with the others.
ALTER TABLE call_events
    ADD COLUMN attempt_result text,
    ADD COLUMN attempted_by   text,
    ADD COLUMN channel        text,
    ADD COLUMN linkage        text,
    ADD COLUMN completed_by   text;

-- Decisions keep the call's safety flags (an override lowering police involvement on such a call
-- needs an approver) and the approver of an override.
ALTER TABLE triage_decisions
    ADD COLUMN safety_flags     text[] NOT NULL DEFAULT '{}',
    ADD COLUMN approved_by      text,
    ADD COLUMN approved_by_role text;
UPDATE triage_decisions d SET safety_flags = c.safety_flags FROM calls c WHERE c.call_id = d.call_id;

-- Every byte of a rejected record's key too (the text column holds a readable, possibly cut, copy),
-- and where it was refused: the stage and the exception's name.
ALTER TABLE dead_letters
    ADD COLUMN original_key bytea,
    ADD COLUMN stage        text,
    ADD COLUMN exception    text;
