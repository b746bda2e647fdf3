-- Core tables. Every table is a ReplacingMergeTree keyed by its natural id, so a re-delivered
-- batch (at-least-once delivery) never adds a second logical row; exact answers use FINAL or
-- uniqExact, which are correct before ClickHouse has merged parts.
-- non_replicated_deduplication_window lets a retried insert with the same
-- insert_deduplication_token be dropped outright.

CREATE TABLE IF NOT EXISTS posts
(
    platform               LowCardinality(String),
    post_id                String,
    post_url               String,
    post_type              LowCardinality(String),
    author_id              Nullable(String),
    author_avatar          Nullable(String),
    author_name            Nullable(String),
    author_handle          String,
    post_time              DateTime64(3, 'UTC'),
    post_content           String,
    post_images            String COMMENT 'JSON array of media {original_url, oss_url, type, width, height, video_duration_ms, video_variants}',
    comment_count          UInt64,
    retweet_count          UInt64,
    like_count             UInt64,
    quote_count            UInt64,
    view_count             Nullable(UInt64),
    bookmark_count         Nullable(UInt64),
    is_retweet             Bool,
    is_quote               Bool,
    original_post_id       Nullable(String),
    original_author_avatar Nullable(String),
    original_author_name   Nullable(String),
    original_author_handle Nullable(String),
    original_post_time     Nullable(DateTime64(3, 'UTC')),
    original_post_content  Nullable(String),
    original_post_images   String COMMENT 'JSON array, as post_images',
    post_links             String COMMENT 'JSON array of {url, expanded_url, display_url}',
    hashtags               Array(String),
    mentions               Array(String),
    lang                   Nullable(String),
    conversation_id        Nullable(String),
    parent_post_id         Nullable(String),
    parent_comment_id      Nullable(String),
    oss_file_path          Nullable(String),
    keyword                String,
    task_id                String,
    collected_at           DateTime64(3, 'UTC'),
    raw_data               String CODEC(ZSTD(3)),
    version                UInt64 COMMENT 'collected_at in ms: the newest collection wins'
)
ENGINE = ReplacingMergeTree(version)
ORDER BY post_id
SETTINGS non_replicated_deduplication_window = 1000;

CREATE TABLE IF NOT EXISTS task_posts
(
    task_id      String,
    post_id      String,
    keyword      String,
    collected_at DateTime64(3, 'UTC')
)
ENGINE = ReplacingMergeTree
ORDER BY (task_id, post_id)
SETTINGS non_replicated_deduplication_window = 1000;

-- Billing: unique posts per keyword per calendar month of collection (UTC).
CREATE TABLE IF NOT EXISTS keyword_month_posts
(
    keyword      String,
    month        Date COMMENT 'first day of the collection month (UTC)',
    post_id      String,
    task_id      String,
    collected_at DateTime64(3, 'UTC')
)
ENGINE = ReplacingMergeTree
ORDER BY (keyword, month, post_id)
SETTINGS non_replicated_deduplication_window = 1000;

CREATE TABLE IF NOT EXISTS task_slices
(
    task_id     String,
    slice_id    String,
    slice_count UInt32,
    end_reason  LowCardinality(String),
    pages       UInt32,
    ended_at    DateTime64(3, 'UTC')
)
ENGINE = ReplacingMergeTree
ORDER BY (task_id, slice_id);

CREATE TABLE IF NOT EXISTS users
(
    platform        LowCardinality(String),
    user_id         String,
    user_name       String,
    name            Nullable(String),
    avatar          Nullable(String),
    description     Nullable(String),
    created_at      Nullable(String),
    created_at_time Nullable(DateTime('UTC')),
    followers       UInt64,
    following       UInt64,
    statuses_count  UInt64,
    verified        Bool,
    blue_verified   Bool,
    seen_at         DateTime64(3, 'UTC'),
    raw_data        String CODEC(ZSTD(3)),
    version         UInt64
)
ENGINE = ReplacingMergeTree(version)
ORDER BY user_id
SETTINGS non_replicated_deduplication_window = 1000;
