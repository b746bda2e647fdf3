-- KOL following lists (xget kol-followings). Re-processing a cached page writes the same rows
-- again, which these engines make harmless: exact answers use FINAL (or GROUP BY for the
-- relation's min/max columns).

-- The KOLs. `kol` is the key: the user id, or '@' + lower(handle) when imported by handle
-- (the id is filled in by a later version once resolved). Import order is kept in added_at.
CREATE TABLE IF NOT EXISTS twitter_kol
(
    kol       String,
    id        String COMMENT 'X user id; empty until resolved',
    user_name String COMMENT 'handle without @; empty when imported by id',
    added_at  DateTime64(6, 'UTC'),
    version   UInt64
)
ENGINE = ReplacingMergeTree(version)
ORDER BY kol;

-- Every user some KOL follows, once per user id; the newest fetch wins.
CREATE TABLE IF NOT EXISTS twitter_kol_all
(
    id              String,
    name            String,
    user_name       String,
    avatar          String,
    description     String,
    created_at      String COMMENT 'X''s original created_at text',
    created_at_time Nullable(DateTime('UTC')),
    followers       UInt64,
    following       UInt64,
    statuses_count  UInt64,
    source          LowCardinality(String),
    fetched_at      DateTime64(3, 'UTC'),
    version         UInt64 COMMENT 'fetched_at in ms'
)
ENGINE = ReplacingMergeTree(version)
ORDER BY id;

-- Who follows whom: one row per (KOL, followed user) after merges; first/last seen survive
-- any number of re-fetches (min/max are kept by the engine).
CREATE TABLE IF NOT EXISTS twitter_kol_following
(
    kol_id       String,
    following_id String,
    first_seen   SimpleAggregateFunction(min, DateTime64(3, 'UTC')),
    last_seen    SimpleAggregateFunction(max, DateTime64(3, 'UTC'))
)
ENGINE = AggregatingMergeTree
ORDER BY (kol_id, following_id);

-- A KOL is written here only after all its rows are in the two tables above.
CREATE TABLE IF NOT EXISTS twitter_kol_progress
(
    kol         String,
    kol_id      String,
    status      LowCardinality(String),
    pages       UInt32,
    followings  UInt32,
    source      LowCardinality(String),
    finished_at DateTime64(3, 'UTC'),
    version     UInt64
)
ENGINE = ReplacingMergeTree(version)
ORDER BY kol;
