-- An X request is identified by its event id (AccountEvent.event_id), no longer by its place on
-- account-events alone. A broker restored from its last snapshot after a crash gives offsets
-- it had already given: a request recorded at such an offset was merged away with the
-- earlier request the ReplacingMergeTree key named the same, and a task's cost came out low.
-- Rows of events without an id keep event_id '' and their place as identity; readers count
-- if(event_id = '', place, event_id).
ALTER TABLE task_x_requests ADD COLUMN IF NOT EXISTS event_id String, MODIFY ORDER BY (task_id, event_partition, event_offset, event_id);
