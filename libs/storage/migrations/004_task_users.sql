-- Users collected by user tasks (a profile, a post's retweeters): the task's membership, as
-- task_posts is for posts. The user itself is a row of `users` (written first).
-- retweeted_at stays NULL: X's Retweeters answer does not carry the retweet's time.
CREATE TABLE IF NOT EXISTS task_users
(
    task_id      String,
    user_id      String,
    keyword      String,
    relation     LowCardinality(String) COMMENT 'profile | retweeter',
    subject      String COMMENT 'the retweeted post id, or the profile screen name',
    rank         UInt32 COMMENT 'position in X''s list',
    retweeted_at Nullable(DateTime64(3, 'UTC')),
    collected_at DateTime64(3, 'UTC')
)
ENGINE = ReplacingMergeTree
ORDER BY (task_id, user_id)
SETTINGS non_replicated_deduplication_window = 1000;
