-- Reads by time at millions of posts (issue 17), exact, by ClickHouse's own means:
-- * post_time_mm: X's post ids are time-ordered, so `posts` (sorted by post_id) keeps each
--   granule within a narrow span of post_time; a min/max index lets a time window (trending,
--   start_date/end_date) skip every granule outside it instead of reading them all.
-- * keyword_month_posts.by_month: monthly statistics of every keyword (`WHERE month = …`)
--   read that month's rows in a copy sorted by month first; uniqExact over it is as exact as
--   over the table. 'rebuild' keeps the copy right when ReplacingMergeTree merges drop rows.
ALTER TABLE posts ADD INDEX IF NOT EXISTS post_time_mm post_time TYPE minmax GRANULARITY 1;
ALTER TABLE posts MATERIALIZE INDEX post_time_mm;
ALTER TABLE keyword_month_posts MODIFY SETTING deduplicate_merge_projection_mode = 'rebuild';
ALTER TABLE keyword_month_posts ADD PROJECTION IF NOT EXISTS by_month (SELECT * ORDER BY month, keyword, post_id);
ALTER TABLE keyword_month_posts MATERIALIZE PROJECTION by_month;
