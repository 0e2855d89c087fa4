-- What a call's timers of one kind have seen (agents/timer_book.py): the inbound event ids applied,
-- and the offset on the call's partition up to which every record was seen. A record Kafka delivers
-- again after a crash or a broker restart, or an event a CAD sends twice, is skipped instead of
-- applied twice (an override read again after the team's timer had closed started a second timer:
-- found by the fault-injection suite's broker restarts). Timers stored before this migration start
-- with nothing seen.
ALTER TABLE timers ADD COLUMN applied_event_ids json NOT NULL DEFAULT '[]',
                   ADD COLUMN applied_through_offset bigint;
