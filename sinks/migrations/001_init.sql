-- Calls, triage decisions, lifecycle events, dead letters, co-responder SLA timers.
-- Every table is keyed by an event id (or the call id for per-call state) so that replayed
-- events are absorbed by ON CONFLICT: nothing is stored twice.

CREATE TABLE calls (
    call_id                    text PRIMARY KEY,
    event_id                   text NOT NULL UNIQUE,
    occurred_at                timestamptz NOT NULL,
    center_id                  text NOT NULL,
    nature_code                text NOT NULL,
    mpds_code                  text,
    concerns                   text[] NOT NULL,
    safety_flags               text[] NOT NULL,
    person_in_crisis_is_caller boolean NOT NULL,
    juvenile                   boolean NOT NULL,
    district                   text NOT NULL,
    caller_phone               text,          -- personal data: internal only, never in reports
    person_ref                 text,          -- pseudonymous (keyed hash of the phone number)
    stored_at                  timestamptz NOT NULL DEFAULT now()
);

-- Rules' decisions and dispatcher overrides side by side: both are kept.
CREATE TABLE triage_decisions (
    event_id                  text PRIMARY KEY,
    type                      text NOT NULL CHECK (type IN ('triage.decided', 'triage.overridden')),
    call_id                   text NOT NULL,
    source_event_id           text NOT NULL,
    decided_at                timestamptz NOT NULL,
    route                     text NOT NULL CHECK (route IN ('diversion_line', 'co_responder', 'emergency')),
    reasons                   text[] NOT NULL,
    policy_name               text NOT NULL,
    policy_version            text NOT NULL,
    second_response_requested boolean NOT NULL,
    center_id                 text,
    district                  text,
    person_ref                text,
    previous_route            text,
    overridden_by             text,
    override_reason           text,          -- dispatcher's free text: internal only
    stored_at                 timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX triage_decisions_call ON triage_decisions (call_id, decided_at);

CREATE TABLE call_events (
    event_id    text PRIMARY KEY,
    call_id     text NOT NULL,
    type        text NOT NULL,
    occurred_at timestamptz NOT NULL,
    unit_id     text,
    unit_type   text,
    disposition text,
    detail      text,
    stored_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX call_events_call ON call_events (call_id, occurred_at);

CREATE TABLE dead_letters (
    event_id         text PRIMARY KEY,  -- derived from topic/partition/offset
    source_topic     text NOT NULL,
    source_partition integer NOT NULL,
    source_offset    bigint NOT NULL,
    source_key       text,
    reason           text NOT NULL,
    error            text NOT NULL,
    original_value   bytea NOT NULL,
    dead_lettered_at timestamptz NOT NULL
);

-- One co-responder arrival timer per call. next_deadline_at is NULL once the timer stopped
-- (arrived, closed or breached), so the partial index holds only running timers.
CREATE TABLE sla_timers (
    call_id          text PRIMARY KEY,
    response         text NOT NULL CHECK (response IN ('first', 'second')),
    requested_at     timestamptz NOT NULL,
    warning_at       timestamptz NOT NULL,
    breach_at        timestamptz NOT NULL,
    partition        integer NOT NULL,
    district         text,
    warned           boolean NOT NULL,
    breached         boolean NOT NULL,
    arrived_at       timestamptz,
    closed_at        timestamptz,
    next_deadline_at timestamptz,
    updated_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX sla_timers_due ON sla_timers (next_deadline_at) WHERE next_deadline_at IS NOT NULL;
CREATE INDEX sla_timers_partition_due ON sla_timers (partition, next_deadline_at)
    WHERE next_deadline_at IS NOT NULL;

CREATE TABLE sla_events (
    event_id        text PRIMARY KEY,
    type            text NOT NULL,
    call_id         text NOT NULL,
    response        text NOT NULL,
    requested_at    timestamptz NOT NULL,
    deadline_at     timestamptz NOT NULL,
    occurred_at     timestamptz NOT NULL,
    arrival_seconds double precision,
    district        text,
    stored_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX sla_events_call ON sla_events (call_id);

-- What partners may see: the current route per call, no personal data.
CREATE VIEW partner_current_triage AS
SELECT DISTINCT ON (call_id)
       call_id, decided_at, route, reasons, policy_name, policy_version,
       second_response_requested, district, person_ref, type
FROM triage_decisions
ORDER BY call_id, decided_at DESC, stored_at DESC;
