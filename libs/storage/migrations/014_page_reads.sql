-- A page of posts at millions of posts (issue 17): reading 50 posts by id read 50 granules of
-- `posts`, and a granule there is ~1,000 rows (the adaptive granularity of ~10 KB rows: raw_data),
-- of every column asked for: ~150 ms of decompression for 50 random posts at 7M, measured.
-- Settings.index_granularity cannot change on an existing table, so the page's columns (every
-- column but raw_data) get their own copy, post_cards: sorted by post_id like posts, in
-- granules of 128 rows and small compressed blocks, fed by a materialized view in the same
-- INSERT as posts (it never lags or runs ahead) and kept newest-row-wins like posts
-- (ReplacingMergeTree(version), read with FINAL). Pages read it; raw_data, asked for, is still read from posts.
-- The search filters' indexes stay on posts only: post_cards is only ever read by post id.
-- Compressed blocks of 4-16 KiB (ClickHouse's default is 64 KiB-1 MiB): a granule is read by
-- decompressing the blocks that hold it, and with 128-row granules a 64 KiB block of a narrow
-- column spans dozens of them. 50 posts by id at 2M rows: 247 ms median with small blocks,
-- 658 ms with the default blocks, 1,204 ms with 8,192-row granules (same rows, measured side
-- by side on a loaded host).
CREATE TABLE IF NOT EXISTS post_cards AS posts
ENGINE = ReplacingMergeTree(version)
ORDER BY post_id
SETTINGS index_granularity = 128, min_compress_block_size = 4096, max_compress_block_size = 16384;

ALTER TABLE post_cards DROP INDEX IF EXISTS content_text;
ALTER TABLE post_cards DROP INDEX IF EXISTS author_lc;
ALTER TABLE post_cards DROP INDEX IF EXISTS post_time_mm;
ALTER TABLE post_cards DROP COLUMN IF EXISTS raw_data;

CREATE MATERIALIZED VIEW IF NOT EXISTS post_cards_mv TO post_cards AS
SELECT platform, post_id, post_url, post_type, author_id, author_avatar, author_name,
       author_handle, post_time, post_content, post_images, comment_count, retweet_count,
       like_count, quote_count, view_count, bookmark_count, is_retweet, is_quote,
       original_post_id, original_author_avatar, original_author_name, original_author_handle,
       original_post_time, original_post_content, original_post_images, original_comment_count,
       original_retweet_count, original_like_count, original_quote_count, original_view_count,
       original_bookmark_count, original_quote_post_id, original_quote_author_avatar,
       original_quote_author_name, original_quote_author_handle, original_quote_post_time,
       original_quote_post_content, post_links, hashtags, mentions, lang, conversation_id,
       parent_post_id, parent_comment_id, oss_file_path, keyword, task_id, collected_at, version
FROM posts;

-- The posts stored before this migration, copied once (a copy overlapping a concurrent write
-- is the same row twice: ReplacingMergeTree keeps one).
INSERT INTO post_cards (platform, post_id, post_url, post_type, author_id, author_avatar,
       author_name, author_handle, post_time, post_content, post_images, comment_count,
       retweet_count, like_count, quote_count, view_count, bookmark_count, is_retweet, is_quote,
       original_post_id, original_author_avatar, original_author_name, original_author_handle,
       original_post_time, original_post_content, original_post_images, original_comment_count,
       original_retweet_count, original_like_count, original_quote_count, original_view_count,
       original_bookmark_count, original_quote_post_id, original_quote_author_avatar,
       original_quote_author_name, original_quote_author_handle, original_quote_post_time,
       original_quote_post_content, post_links, hashtags, mentions, lang, conversation_id,
       parent_post_id, parent_comment_id, oss_file_path, keyword, task_id, collected_at, version)
SELECT platform, post_id, post_url, post_type, author_id, author_avatar, author_name,
       author_handle, post_time, post_content, post_images, comment_count, retweet_count,
       like_count, quote_count, view_count, bookmark_count, is_retweet, is_quote,
       original_post_id, original_author_avatar, original_author_name, original_author_handle,
       original_post_time, original_post_content, original_post_images, original_comment_count,
       original_retweet_count, original_like_count, original_quote_count, original_view_count,
       original_bookmark_count, original_quote_post_id, original_quote_author_avatar,
       original_quote_author_name, original_quote_author_handle, original_quote_post_time,
       original_quote_post_content, post_links, hashtags, mentions, lang, conversation_id,
       parent_post_id, parent_comment_id, oss_file_path, keyword, task_id, collected_at, version
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
