-- Daily outcome counts are made from the facts of each changed center-day (sinks/aggregates.py),
-- no longer added to event by event in every batch: a batch writes its calls' facts and bumps the
-- version of their days; a worker's feed round recounts each day whose version moved past the one it
-- was counted from, and the feed publishes only counted versions. The counts kept so far were exact,
-- so every existing day starts counted.
ALTER TABLE outcome_days ADD COLUMN counted_version bigint NOT NULL DEFAULT 0,
                         ADD COLUMN counted_at timestamptz;
UPDATE outcome_days SET counted_version = version, counted_at = changed_at;
CREATE INDEX outcome_days_uncounted ON outcome_days (center_id, day) WHERE version > counted_version;
DROP INDEX outcome_days_unfed;
CREATE INDEX outcome_days_unfed ON outcome_days (center_id, day) WHERE counted_version > fed_version;
-- Reports say how many days in their range still wait for a recount (counts then lag by one round).
GRANT SELECT ON outcome_days TO crisis_reader;
