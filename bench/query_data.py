"""Synthetic posts shaped like real ones, generated inside ClickHouse (bench/query.py, and
bench/console.py for its 100,000 rows).

Every row is a function of its number n (cityHash64 of n and a salt), so a fill is
reproducible and needs no Python per row. The shape, against real X posts:

- Rows are generated newest first: row n is posted n/total of the way back from the fill's
  start, so a fill stopped (or resumed) part-way is a dense recent store, as a real one
  that has been collecting for a shorter while.
- post_id: 19 digits, increasing with post_time (X's ids are time-ordered snowflakes).
- post_time: evenly over the `days` before the fill (default 365: twelve months of monthly
  statistics); collected_at up to an hour after it.
- author_handle: 200,000 authors with a heavy tail (author = floor(200000 * u^3)): the busiest
  author writes ~1.7 % of all posts (170k at 10M), most write a handful. HEAVY_AUTHOR is
  that busiest one.
- post_content: 8 to 47 words (avg ~140 characters, X's typical length) drawn from a
  30,000-word vocabulary with a Zipf-like skew, then 0-3 hashtags; KEYWORD ("python") is in
  12 % of posts (1.2M matches at 10M), "rust" in 3 %, "golang" in 0.1 %.
- hashtags: 0-3 of 500 tags, skewed (trending has a clear top).
- post_type: 15 % retweet, 5 % quote, 25 % image, 10 % video, else text; image and video
  posts carry one media item in post_images (so has_media is true for 35 %).
- like_count: floor(200000 * u^6) (median ~3,000, a long tail to 200k); retweets a fifth of
  likes, replies a tenth, quotes a fiftieth, views 40 times the likes.
- lang: en 40 %, then ja, zh, es, pt, ko, fr, de (10 % each... see LANGS).
- task_id / keyword: ten tasks of n % 10 (1M posts each at 10M), five task keywords, so
  tasks k and k+5 share a keyword; and they overlap, as scheduled runs of one keyword do: a
  fifth of each task's posts (cityHash64(n, 13) % 5 = 0) were also collected by its twin, half
  an hour before or after it (task_posts and keyword_month_posts rows, OVERLAP_SHARE): each
  task then holds 1.2M posts at 10M, 400k of them shared, ~200k collected first by its twin.
- raw_data: ~9.5 KB of JSON per post (real posts carry 7-12 KB): the post's own fields and a
  repetitive padding, so it costs its size to generate and to read back but compresses far
  better than real JSON (the fill stays within a shared machine's disk). No timed query reads
  raw_data except for the rows a page returns.

task_posts and keyword_month_posts get the same rows as the collection would write them, and
report_batches a delivered batch per task for every REPORT_BATCH rows (posts' oss_file_path
stays null, so every page looks its posts' batch files up: the worst case).
"""

from __future__ import annotations

ID_BASE = 1_900_000_000_000_000_000  # row n's id is ID_BASE - n * 1000: newer rows, larger ids
KEYWORD = "python"
HEAVY_AUTHOR = "u0"
AUTHORS = 200_000
TASKS = 10
OVERLAP_SHARE = 5  # one post in this many is collected by the twin task too
REPORT_BATCH = 1000  # rows of the fill per report batch of each task (100 posts at 10 tasks)
TASK_KEYWORDS = ["python", "rust", "ai", "data", "cloud"]
LANGS = ["en", "en", "en", "en", "ja", "zh", "es", "pt", "ko", "fr"]


# The columns posts_select answers, in its order: the others (a retweet's original counts and
# quoted post, migration 007) are left to their defaults, null.
FILL_COLUMNS = [
    "platform", "post_id", "post_url", "post_type", "author_id", "author_avatar", "author_name",
    "author_handle", "post_time", "post_content", "post_images", "comment_count",
    "retweet_count", "like_count", "quote_count", "view_count", "bookmark_count", "is_retweet",
    "is_quote", "original_post_id", "original_author_avatar", "original_author_name",
    "original_author_handle", "original_post_time", "original_post_content",
    "original_post_images", "post_links", "hashtags", "mentions", "lang", "conversation_id",
    "parent_post_id", "parent_comment_id", "oss_file_path", "keyword", "task_id",
    "collected_at", "raw_data", "version",
]  # fmt: skip


def _u(salt: int) -> str:
    """A uniform [0, 1) of the row number and a salt."""
    return f"(cityHash64(n, {salt}) % 1000003) / 1000003"


def posts_select(start: int, count: int, total: int, anchor_ms: int, days: int = 365) -> str:
    """A SELECT of rows start..start+count-1 of a `total`-row fill, FILL_COLUMNS in order;
    row 0 is posted at `anchor_ms` (Unix ms)."""
    anchor = f"fromUnixTimestamp64Milli(toInt64({anchor_ms}), 'UTC')"
    span_ms = days * 86_400_000
    langs = "[" + ",".join(f"'{x}'" for x in LANGS) + "]"
    kws = "[" + ",".join(f"'{x}'" for x in TASK_KEYWORDS) + "]"
    return f"""
SELECT
  'x' AS platform, post_id,
  concat('https://x.com/', substring(author_handle, 2), '/status/', post_id) AS post_url,
  post_type, toString(100000000 + a) AS author_id,
  concat('https://pbs.twimg.com/profile_images/', toString(a), '/avatar_normal.jpg')
    AS author_avatar,
  concat('User ', toString(a)) AS author_name, author_handle, post_time, post_content,
  if(post_type IN ('image', 'video'),
     concat('[{{"original_url":"https://pbs.twimg.com/media/', post_id, '.jpg",',
            '"oss_url":null,"type":"', if(post_type = 'image', 'image', 'video_cover'),
            '","width":1200,"height":675,"video_duration_ms":null,"video_variants":[]}}]'),
     '[]') AS post_images,
  intDiv(like_count, 10) AS comment_count, intDiv(like_count, 5) AS retweet_count, like_count,
  intDiv(like_count, 50) AS quote_count, like_count * 40 AS view_count,
  intDiv(like_count, 20) AS bookmark_count,
  post_type = 'retweet' AS is_retweet, post_type = 'quote' AS is_quote,
  if(post_type IN ('retweet', 'quote'), toString(toUInt64(post_id) - 1000), NULL)
    AS original_post_id,
  NULL AS original_author_avatar, NULL AS original_author_name,
  if(post_type IN ('retweet', 'quote'), '@u1', NULL) AS original_author_handle,
  if(post_type IN ('retweet', 'quote'), post_time - INTERVAL 1 HOUR, NULL) AS original_post_time,
  if(post_type IN ('retweet', 'quote'), 'the original post', NULL) AS original_post_content,
  '[]' AS original_post_images, '[]' AS post_links, hashtags,
  if(cityHash64(n, 9) % 4 = 0, ['u1'], []) AS mentions,
  arrayElement({langs}, 1 + cityHash64(n, 10) % {len(LANGS)}) AS lang,
  post_id AS conversation_id, NULL AS parent_post_id, NULL AS parent_comment_id,
  NULL AS oss_file_path,
  arrayElement({kws}, 1 + (n % {TASKS}) % {len(TASK_KEYWORDS)}) AS keyword,
  concat('bench-task-', toString(n % {TASKS})) AS task_id,
  post_time + toIntervalSecond(cityHash64(n, 11) % 3600) AS collected_at,
  concat('{{"__typename":"Tweet","rest_id":"', post_id, '","legacy":{{"full_text":',
         toJSONString(post_content), ',"favorite_count":', toString(like_count),
         ',"lang":"', lang, '"}},"padding":"',
         repeat('{{"k":"v","n":0123456789}}', 350 + cityHash64(n, 12) % 40), '"}}') AS raw_data,
  toUInt64(toUnixTimestamp64Milli(collected_at)) AS version
FROM (
  SELECT
    number AS n,
    toString({ID_BASE} - n * 1000) AS post_id,
    {anchor} - toIntervalMillisecond(intDiv(n * {span_ms}, {total})) AS post_time,
    toUInt32(floor({AUTHORS} * pow({_u(1)}, 3))) AS a,
    concat('@u', toString(a)) AS author_handle,
    multiIf(cityHash64(n, 2) % 100 < 15, 'retweet', cityHash64(n, 2) % 100 < 20, 'quote',
            cityHash64(n, 2) % 100 < 45, 'image', cityHash64(n, 2) % 100 < 55, 'video', 'text')
      AS post_type,
    arrayMap(i -> concat('tag', toString(floor(500 * pow((cityHash64(n, 300 + i) % 1000003)
      / 1000003, 2)))), range(cityHash64(n, 3) % 4)) AS hashtags,
    concat(
      arrayStringConcat(arrayMap(i -> concat('w', toString(floor(30000 * pow(
        (cityHash64(n, 100 + i) % 1000003) / 1000003, 2)))), range(8 + cityHash64(n, 4) % 40)),
        ' '),
      multiIf(cityHash64(n, 5) % 1000 < 120, ' Python is great',
              cityHash64(n, 5) % 1000 < 150, ' rust',
              cityHash64(n, 5) % 1000 < 151, ' golang', ''),
      arrayStringConcat(arrayMap(t -> concat(' #', t), hashtags))) AS post_content,
    toUInt64(floor(200000 * pow({_u(6)}, 6))) AS like_count
  FROM numbers({start}, {count})
)
"""


def post_id_of(n: int) -> str:
    return str(ID_BASE - n * 1000)


def fill(store, total: int, batch: int = 50_000, days: int = 365, log=print) -> None:
    """Insert `total` synthetic posts (and their task_posts / keyword_month_posts rows) in
    batches of `batch`, printing progress. `store` is a libs.storage ClickHouseStore.

    Resumable: the fill's time anchor is kept in a table, and a fill that was stopped goes on
    from its last whole batch (a batch inserted twice is the same rows: the tables' engines
    keep one, and every count the API answers is exact)."""
    store.command_sync(
        "CREATE TABLE IF NOT EXISTS bench_fill (total UInt64, anchor_ms Int64, days UInt32) "
        "ENGINE = TinyLog"
    )
    meta = store.query_rows_sync("SELECT total, anchor_ms, days FROM bench_fill")
    if meta and (meta[0][0], meta[0][2]) != (total, days):
        raise SystemExit(f"this store holds a fill of {meta[0][0]:,} posts over {meta[0][2]} days")
    if not meta:
        import time

        anchor_ms = int(time.time() * 1000)
        store.command_sync(f"INSERT INTO bench_fill VALUES ({total}, {anchor_ms}, {days})")
    else:
        anchor_ms = meta[0][1]
    have = store.query_rows_sync("SELECT count() FROM posts")[0][0]
    first = min(have // batch * batch, total)
    if first:
        log(f"  resuming at post {first:,} of {total:,}")
    if batch % REPORT_BATCH:
        raise SystemExit(f"--batch must be a multiple of {REPORT_BATCH:,} (a report batch)")
    if first and not store.query_rows_sync("SELECT count() FROM report_batches")[0][0]:
        # a store filled before the fill wrote report batches: theirs first
        for start in range(0, first, batch):
            _fill_batches(store, start, batch)
    store.command_sync(
        "CREATE TABLE IF NOT EXISTS bench_fill_overlap (done UInt8) ENGINE = TinyLog"
    )
    if not store.query_rows_sync("SELECT count() FROM bench_fill_overlap")[0][0]:
        # a store filled before the tasks overlapped: the overlap of its rows first
        for start in range(0, first, batch):
            _fill_overlap(store, start, batch)
        store.command_sync("INSERT INTO bench_fill_overlap VALUES (1)")
    cols = ", ".join(FILL_COLUMNS)
    # Small blocks: a batch's raw_data is ~0.5 GB before compression.
    settings = {"max_block_size": 8192, "min_insert_block_size_rows": batch}
    for start in range(first, total, batch):
        count = min(batch, total - start)
        store.command_sync(
            f"INSERT INTO posts ({cols}) {posts_select(start, count, total, anchor_ms, days)}",
            settings=settings,
        )
        rng = _id_range(start, count)
        store.command_sync(
            "INSERT INTO task_posts SELECT task_id, post_id, keyword, collected_at "
            f"FROM posts WHERE {rng}"
        )
        store.command_sync(
            "INSERT INTO keyword_month_posts SELECT keyword, toStartOfMonth(collected_at), "
            f"post_id, task_id, collected_at FROM posts WHERE {rng}"
        )
        _fill_overlap(store, start, count)
        _fill_batches(store, start, count)
        done = start + count
        if done == total or (done // batch) % 10 == 0:
            log(f"  filled {done:,} / {total:,} posts", flush=True)


def _id_range(start: int, count: int) -> str:
    """The condition on post_id that selects rows start..start+count-1 of the fill."""
    return f"post_id > '{post_id_of(start + count)}' AND post_id <= '{post_id_of(start)}'"


def _fill_overlap(store, start: int, count: int) -> None:
    """Rows start..start+count-1 that the twin task of the same keyword collected too (one in
    OVERLAP_SHARE), half an hour before or after the task itself, as its collection writes
    them: a task_posts and a keyword_month_posts row."""
    rng = _id_range(start, count)
    twin = (
        f"SELECT concat('bench-task-', toString((n + {TASKS // 2}) % {TASKS})) AS task_id, "
        "post_id, keyword, "
        "collected_at + toIntervalSecond(if(cityHash64(n, 14) % 2 = 0, -1800, 1800)) AS at "
        f"FROM (SELECT post_id, keyword, collected_at, "
        f"intDiv({ID_BASE} - toUInt64(post_id), 1000) AS n FROM posts WHERE {rng}) "
        f"WHERE cityHash64(n, 13) % {OVERLAP_SHARE} = 0"
    )
    store.command_sync(f"INSERT INTO task_posts SELECT task_id, post_id, keyword, at FROM ({twin})")
    store.command_sync(
        "INSERT INTO keyword_month_posts SELECT keyword, toStartOfMonth(at), post_id, task_id, "
        f"at FROM ({twin})"
    )


def _fill_batches(store, start: int, count: int) -> None:
    """The report batches of rows start..start+count-1, as the reporter writes them: each
    task's posts of every REPORT_BATCH rows in one delivered batch (100 posts at 10 tasks),
    its post_ids the batch's membership."""
    rng = _id_range(start, count)
    store.command_sync(
        "INSERT INTO report_batches (task_id, batch_no, batch_id, keyword, post_ids, "
        "oss_file_path, completion_status, total_collected, state, attempts, last_error, "
        "created_at, delivered_at, version) "
        f"SELECT task_id, toUInt32(intDiv(n, {REPORT_BATCH})) AS no, "
        "concat(task_id, ':', toString(no)), "
        "any(keyword), groupArray(post_id), "
        "concat('reports/', task_id, '/batch_', toString(no), '.json'), 'partial', count(), "
        "'delivered', 1, NULL, max(collected_at), max(collected_at), "
        "toUInt64(toUnixTimestamp64Milli(max(collected_at))) "
        f"FROM (SELECT task_id, keyword, post_id, collected_at, "
        f"intDiv({ID_BASE} - toUInt64(post_id), 1000) AS n FROM posts WHERE {rng}) "
        "GROUP BY task_id, no"
    )
