-- Outcomes (issue 9): per-call facts, daily aggregates kept in the batch's own transaction, the
-- partner feed's revisions, and the audit of report runs.

-- The CAD's reason when the program's team did not serve a call (call.closed.unserved_reason).
ALTER TABLE call_events ADD COLUMN unserved_reason text;

-- One row per call: what its events said so far (domain.outcomes.CallFacts). Internal: person_ref
-- is here only to count repeat contacts; reports never show it.
CREATE TABLE outcome_calls (
    call_id                   text PRIMARY KEY,
    center_id                 text,
    district                  text,
    received_at               timestamptz,
    person_ref                text,
    behavioral_health         boolean NOT NULL DEFAULT false,
    program_route             text,
    program_route_at          timestamptz,
    routed                    boolean NOT NULL DEFAULT false,
    current_route             text,
    current_at                timestamptz,
    team_requested_at         timestamptz,
    team_response             text,
    team_dispatched_at        timestamptz,
    team_arrived_at           timestamptz,
    field_unit_dispatched     boolean NOT NULL DEFAULT false,
    field_unit_arrived        boolean NOT NULL DEFAULT false,
    police_dispatched_at      timestamptz,
    closed_at                 timestamptz,
    disposition               text,
    cad_unserved_reason       text,
    sla_outcome               text,
    sla_outcome_at            timestamptz,
    followup_contact_ended_at timestamptz,
    followup_status           text,
    followup_ended_at         timestamptz,
    followup_days             double precision,
    followup_linkage          text,
    followup_attempts         integer NOT NULL DEFAULT 0,
    followup_reached          boolean NOT NULL DEFAULT false,
    updated_at                timestamptz NOT NULL DEFAULT now()
);
-- Report-time facts: response-time percentiles by center and time, repeat contacts by person.
CREATE INDEX outcome_calls_center_received ON outcome_calls (center_id, received_at);
CREATE INDEX outcome_calls_person ON outcome_calls (person_ref, received_at) WHERE person_ref IS NOT NULL;

-- Counts by center, local day and hour (the policy's time zone), district, funnel route and measure.
-- Changed only by increments of what a batch changed (deltas), under row locks taken in key order.
CREATE TABLE outcome_daily (
    center_id  text NOT NULL,
    day        date NOT NULL,
    hour       smallint NOT NULL,
    district   text NOT NULL,
    route      text NOT NULL,
    measure    text NOT NULL,
    n          bigint NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (center_id, day, hour, district, route, measure)
);
CREATE INDEX outcome_daily_day ON outcome_daily (day, center_id);

-- Each center's day: bumped whenever its aggregates change; the feed publishes a revision when a
-- closed day's version moved past the one its last revision was made from.
CREATE TABLE outcome_days (
    center_id    text NOT NULL,
    day          date NOT NULL,
    version      bigint NOT NULL DEFAULT 1,
    fed_version  bigint NOT NULL DEFAULT 0,
    changed_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (center_id, day)
);
CREATE INDEX outcome_days_unfed ON outcome_days (center_id, day) WHERE version > fed_version;

-- Every revision of a day's record on crisis.outcomes.v1, stored before it is published (an outbox:
-- a crash between publishing and marking re-sends the identical record, which consumers drop by id).
CREATE TABLE outcome_feed (
    center_id    text NOT NULL,
    day          date NOT NULL,
    revision     integer NOT NULL,
    event_id     text NOT NULL UNIQUE,
    payload      jsonb NOT NULL,
    content_hash text NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    published_at timestamptz,
    PRIMARY KEY (center_id, day, revision)
);
CREATE INDEX outcome_feed_unpublished ON outcome_feed (center_id, day, revision) WHERE published_at IS NULL;

-- Who ran which report, when, over which range, in which format.
CREATE TABLE report_runs (
    id               bigserial PRIMARY KEY,
    operator         text NOT NULL,
    os_user          text NOT NULL,
    started_at       timestamptz NOT NULL,
    finished_at      timestamptz,
    from_day         date NOT NULL,
    to_day           date NOT NULL,
    by               text NOT NULL,
    format           text NOT NULL,
    out_path         text,
    cells            integer,
    suppressed_cells integer,
    status           text NOT NULL,
    error            text
);
