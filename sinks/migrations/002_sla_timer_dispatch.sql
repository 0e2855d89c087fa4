-- When the co-responder team was first dispatched: dispatch delay, and arrivals the CAD reported
-- before any dispatch (explained in crisis_unmatched_events_total{reason="arrival_before_dispatch"}).
ALTER TABLE sla_timers ADD COLUMN dispatched_at timestamptz;
