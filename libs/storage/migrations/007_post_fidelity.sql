-- Posts as X says them (issue 14). A retweet's retweet count is X's count of its original, so
-- the post's own is null and the original's counts get their own columns; a retweet of a
-- quote post keeps the post its original quotes. New columns are nullable: rows written
-- before read null, as a record of an older version reads None.
ALTER TABLE posts MODIFY COLUMN retweet_count Nullable(UInt64);
ALTER TABLE posts ADD COLUMN IF NOT EXISTS original_comment_count Nullable(UInt64) AFTER original_post_images;
ALTER TABLE posts ADD COLUMN IF NOT EXISTS original_retweet_count Nullable(UInt64) AFTER original_comment_count;
ALTER TABLE posts ADD COLUMN IF NOT EXISTS original_like_count Nullable(UInt64) AFTER original_retweet_count;
ALTER TABLE posts ADD COLUMN IF NOT EXISTS original_quote_count Nullable(UInt64) AFTER original_like_count;
ALTER TABLE posts ADD COLUMN IF NOT EXISTS original_view_count Nullable(UInt64) AFTER original_quote_count;
ALTER TABLE posts ADD COLUMN IF NOT EXISTS original_bookmark_count Nullable(UInt64) AFTER original_view_count;
ALTER TABLE posts ADD COLUMN IF NOT EXISTS original_quote_post_id Nullable(String) AFTER original_bookmark_count;
ALTER TABLE posts ADD COLUMN IF NOT EXISTS original_quote_author_avatar Nullable(String) AFTER original_quote_post_id;
ALTER TABLE posts ADD COLUMN IF NOT EXISTS original_quote_author_name Nullable(String) AFTER original_quote_author_avatar;
ALTER TABLE posts ADD COLUMN IF NOT EXISTS original_quote_author_handle Nullable(String) AFTER original_quote_author_name;
ALTER TABLE posts ADD COLUMN IF NOT EXISTS original_quote_post_time Nullable(DateTime64(3, 'UTC')) AFTER original_quote_author_handle;
ALTER TABLE posts ADD COLUMN IF NOT EXISTS original_quote_post_content Nullable(String) AFTER original_quote_post_time;
-- Media oss_urls and the batch file are written into the row once known (libs/storage/post_oss.py).
ALTER TABLE posts COMMENT COLUMN version 'collected_at in ms plus the object-store facts the row holds: the newest collection wins, then the row that knows most';
