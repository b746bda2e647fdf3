-- A page of posts at millions of posts (issue 17). Reading 50 posts by id read 50 granules of
-- `posts`, a granule there ~1,000 rows (the adaptive granularity of ~10 KB rows: raw_data), of
-- each of the 49 columns a page answers (~80 files with the null maps and array sizes): ~150 ms
-- for 50 random posts at 7M on a quiet host. Granularity cannot change on an existing table,
-- and even in granules of 128 rows the 80 files of 50 scattered granules cost ~4,000 seeks and
-- block decompressions. So a page's columns get their own copy, post_cards, one row per stored
-- row of posts:
-- * `card`: the 49 columns as one JSON object (formatRowNoNewline 'JSONEachRow'), read back by
--   services/task_gateway/post_cards.py into the values the columns would have given;
-- * post_time, like_count, retweet_count: what a page sorts or filters its posts by;
-- * sorted by post_id in granules of 128 rows and compressed blocks of 4-16 KiB (ClickHouse's
--   default blocks of 64 KiB-1 MiB would span dozens of granules), ZSTD for the card;
-- * newest row wins, as in posts: ReplacingMergeTree(version), read with FINAL;
-- * fed by a materialized view in the same INSERT as posts: it never lags or runs ahead.
-- 50 posts by id at 2M rows, side by side on a loaded host: 36 ms median from cards, 240 ms
-- from the columns in small granules, 1,204 ms in 8,192-row granules. raw_data, asked for, is
-- still read from posts.
CREATE TABLE IF NOT EXISTS post_cards
(
    post_id       String,
    post_time     DateTime64(3, 'UTC'),
    like_count    UInt64,
    retweet_count Nullable(UInt64),
    card          String CODEC(ZSTD(3)) COMMENT 'the page columns of posts as a JSON object',
    version       UInt64
)
ENGINE = ReplacingMergeTree(version)
ORDER BY post_id
SETTINGS index_granularity = 128, min_compress_block_size = 4096, max_compress_block_size = 16384;

CREATE MATERIALIZED VIEW IF NOT EXISTS post_cards_mv TO post_cards AS
SELECT post_id, post_time, like_count, retweet_count,
       formatRowNoNewline('JSONEachRow', platform, post_id, post_url, post_type, author_id, author_avatar, author_name,
       author_handle, post_time, post_content, post_images, comment_count, retweet_count,
       like_count, quote_count, view_count, bookmark_count, is_retweet, is_quote,
       original_post_id, original_author_avatar, original_author_name, original_author_handle,
       original_post_time, original_post_content, original_post_images, original_comment_count,
       original_retweet_count, original_like_count, original_quote_count, original_view_count,
       original_bookmark_count, original_quote_post_id, original_quote_author_avatar,
       original_quote_author_name, original_quote_author_handle, original_quote_post_time,
       original_quote_post_content, post_links, hashtags, mentions, lang, conversation_id,
       parent_post_id, parent_comment_id, oss_file_path, keyword, task_id, collected_at) AS card,
       version
FROM posts;

-- The posts stored before this migration, copied once (a copy overlapping a concurrent write
-- is the same row twice: ReplacingMergeTree keeps one).
INSERT INTO post_cards (post_id, post_time, like_count, retweet_count, card, version)
SELECT post_id, post_time, like_count, retweet_count,
       formatRowNoNewline('JSONEachRow', platform, post_id, post_url, post_type, author_id, author_avatar, author_name,
       author_handle, post_time, post_content, post_images, comment_count, retweet_count,
       like_count, quote_count, view_count, bookmark_count, is_retweet, is_quote,
       original_post_id, original_author_avatar, original_author_name, original_author_handle,
       original_post_time, original_post_content, original_post_images, original_comment_count,
       original_retweet_count, original_like_count, original_quote_count, original_view_count,
       original_bookmark_count, original_quote_post_id, original_quote_author_avatar,
       original_quote_author_name, original_quote_author_handle, original_quote_post_time,
       original_quote_post_content, post_links, hashtags, mentions, lang, conversation_id,
       parent_post_id, parent_comment_id, oss_file_path, keyword, task_id, collected_at),
       version
FROM posts;

-- Which batch file holds a post: the data API showed each post's newest batch file by
-- unnesting every batch's post_ids (ARRAY JOIN over all of report_batches, ~10M ids at 10M
-- posts) on every page. post_batches is the same membership, one row per post and batch,
-- sorted by post id: a page's 50 posts are 50 short key ranges. Fed by a view of
-- report_batches (a batch re-written with a new state writes its rows again: the newest
-- version wins, FINAL).
CREATE TABLE IF NOT EXISTS post_batches
(
    post_id       String,
    task_id       String,
    batch_no      UInt32,
    oss_file_path String,
    created_at    DateTime64(3, 'UTC'),
    version       UInt64
)
ENGINE = ReplacingMergeTree(version)
ORDER BY (post_id, task_id, batch_no);

CREATE MATERIALIZED VIEW IF NOT EXISTS post_batches_mv TO post_batches AS
SELECT arrayJoin(post_ids) AS post_id, task_id, batch_no, oss_file_path, created_at, version
FROM report_batches;

INSERT INTO post_batches (post_id, task_id, batch_no, oss_file_path, created_at, version)
SELECT arrayJoin(post_ids), task_id, batch_no, oss_file_path, created_at, version
FROM report_batches;
