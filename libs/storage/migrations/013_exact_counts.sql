-- Exact counts at millions of posts without reading every post id (issue 17), by ClickHouse's
-- own means. Each table below is fed by a materialized view from the table the services
-- already write, in the same INSERT, so it can never lag behind or run ahead of its source,
-- and each count stays exact under at-least-once delivery and before any merge:
-- * keyword_month_counts / task_counts hold uniqExact STATES (the set of post ids): a post
--   delivered twice, or written by two inserts that have not merged yet, is the same element
--   of the set, so uniqExactMerge counts it once. The AggregatingMergeTree merges the states
--   of one key into one; a read merges the few that are left. No count is ever cached: every
--   answer is the union of what is stored at that moment.
-- * author_posts: (lower-cased handle, post id), sorted by both, so a user's posts are a
--   contiguous range: the newest first without sorting, and uniqExact(post_id) over just
--   that user's rows (a duplicate before merge is counted once).
-- Rows stored before this migration are copied in once (a copy that overlaps a concurrent
-- write is harmless for the same reason: sets and a ReplacingMergeTree).

CREATE TABLE IF NOT EXISTS keyword_month_counts
(
    keyword String,
    month   Date,
    posts   AggregateFunction(uniqExact, String)
)
ENGINE = AggregatingMergeTree
ORDER BY (month, keyword);

CREATE MATERIALIZED VIEW IF NOT EXISTS keyword_month_counts_mv TO keyword_month_counts AS
SELECT keyword, month, uniqExactState(post_id) AS posts
FROM keyword_month_posts
GROUP BY keyword, month;

INSERT INTO keyword_month_counts
SELECT keyword, month, uniqExactState(post_id) FROM keyword_month_posts GROUP BY keyword, month;

CREATE TABLE IF NOT EXISTS task_counts
(
    task_id  String,
    keyword  SimpleAggregateFunction(any, String),
    posts    AggregateFunction(uniqExact, String)
)
ENGINE = AggregatingMergeTree
ORDER BY task_id;

CREATE MATERIALIZED VIEW IF NOT EXISTS task_counts_mv TO task_counts AS
SELECT task_id, any(keyword) AS keyword, uniqExactState(post_id) AS posts
FROM task_posts
GROUP BY task_id;

INSERT INTO task_counts
SELECT task_id, any(keyword), uniqExactState(post_id) FROM task_posts GROUP BY task_id;

CREATE TABLE IF NOT EXISTS author_posts
(
    author_lc String COMMENT 'lower(author_handle), as the data API''s username filter',
    post_id   String
)
ENGINE = ReplacingMergeTree
ORDER BY (author_lc, post_id);

CREATE MATERIALIZED VIEW IF NOT EXISTS author_posts_mv TO author_posts AS
SELECT lower(author_handle) AS author_lc, post_id FROM posts;

INSERT INTO author_posts SELECT lower(author_handle), post_id FROM posts;

-- The search filters' cheapest columns: has_media as one byte per post instead of comparing
-- the post_images JSON text of every candidate, and lang as a dictionary-encoded column (a
-- handful of distinct codes). Both are the same values as before; MATERIALIZE / MODIFY write
-- them for the posts already stored (background mutations).
ALTER TABLE posts ADD COLUMN IF NOT EXISTS has_media Bool MATERIALIZED post_images != '[]';
ALTER TABLE posts MATERIALIZE COLUMN has_media;
ALTER TABLE posts MODIFY COLUMN lang LowCardinality(Nullable(String));
