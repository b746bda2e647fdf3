-- A task's statistics now come from one pass over its keyword's tasks' rows of task_posts
-- (issue 17, services/task_gateway/statistics_api.py task_figures). Nothing reads
-- task_counts' uniqExact states any more, yet every insert into task_posts built one per task
-- and the forced merges of 015 rewrote them (~16 bytes a post id) every two minutes, in the
-- dedup-counter's process. What the pass needs is which tasks a keyword has: task_keywords,
-- one row per task (a repeated row is harmless: it is only read as a set of task ids).
-- A release before this one reads task_counts: roll the gateway forward with this migration.
CREATE TABLE IF NOT EXISTS task_keywords
(
    task_id  String,
    keyword  String
)
ENGINE = ReplacingMergeTree
ORDER BY task_id;

CREATE MATERIALIZED VIEW IF NOT EXISTS task_keywords_mv TO task_keywords AS
SELECT DISTINCT task_id, keyword
FROM task_posts;

INSERT INTO task_keywords
SELECT DISTINCT task_id, keyword FROM task_posts;

DROP VIEW IF EXISTS task_counts_mv;

DROP TABLE IF EXISTS task_counts;
