-- Reporter state. Every row is a new version of its key (ReplacingMergeTree(version)); read
-- with FINAL so answers are exact before parts merge.

-- What the reporter knows of each task: where to report and how far the collection is.
CREATE TABLE IF NOT EXISTS report_tasks
(
    task_id       String,
    keyword       String,
    callback_url  Nullable(String),
    status        LowCardinality(String) COMMENT 'running | completed, from task progress',
    end_reason    Nullable(String),
    collected     UInt64,
    target        UInt64,
    created_at    DateTime64(3, 'UTC'),
    completed_at  Nullable(DateTime64(3, 'UTC')),
    updated_at    DateTime64(3, 'UTC'),
    version       UInt64
)
ENGINE = ReplacingMergeTree(version)
ORDER BY task_id;

-- One row per batch; post_ids is the batch's membership, recorded before the file is written
-- and the webhook called, so a restart re-sends exactly the same batch under the same id.
CREATE TABLE IF NOT EXISTS report_batches
(
    task_id           String,
    batch_no          UInt32,
    batch_id          String,
    keyword           String,
    post_ids          Array(String),
    oss_file_path     String,
    completion_status LowCardinality(String) COMMENT 'partial | completed',
    total_collected   UInt64,
    state             LowCardinality(String) COMMENT 'pending | delivered | dead',
    attempts          UInt32,
    last_error        Nullable(String),
    created_at        DateTime64(3, 'UTC'),
    delivered_at      Nullable(DateTime64(3, 'UTC')),
    version           UInt64
)
ENGINE = ReplacingMergeTree(version)
ORDER BY (task_id, batch_no);

-- Where each media URL landed in object storage (or why it failed), from media-stored.
CREATE TABLE IF NOT EXISTS media_objects
(
    original_url     String,
    status           LowCardinality(String) COMMENT 'stored | failed',
    cause            Nullable(String),
    object_key       Nullable(String),
    oss_url          Nullable(String),
    content_type     Nullable(String),
    bytes            Nullable(UInt64),
    width            Nullable(UInt32),
    height           Nullable(UInt32),
    sha256           Nullable(String),
    video_url        Nullable(String),
    video_oss_url    Nullable(String),
    video_status     Nullable(String),
    video_cause      Nullable(String),
    stored_at        DateTime64(3, 'UTC'),
    version          UInt64
)
ENGINE = ReplacingMergeTree(version)
ORDER BY original_url;
