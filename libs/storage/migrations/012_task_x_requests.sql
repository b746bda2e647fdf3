-- Actual cost per task: one row per X request made for a task (from account-events, where the
-- scraper reports every request's outcome with its task id). Keyed by the event's place on
-- account-events, so a batch handled twice (at-least-once delivery) stores each request once
-- after merges and counts once with uniqExact((event_partition, event_offset)).
CREATE TABLE IF NOT EXISTS task_x_requests
(
    task_id         String,
    operation       LowCardinality(String),
    outcome         LowCardinality(String),
    account_id      String,
    proxy_id        Nullable(String),
    event_partition UInt32,
    event_offset    UInt64,
    at              DateTime64(3, 'UTC')
)
ENGINE = ReplacingMergeTree
ORDER BY (task_id, event_partition, event_offset);
