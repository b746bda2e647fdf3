"""XGet configuration: one pydantic-settings object read from XGET_* environment variables.

Every endpoint (Kafka, ClickHouse, object storage, X itself) is a setting, so the same code
runs embedded on a laptop, in CI against local servers, and in production — no code change.
See `.env.example` for every variable with its meaning.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="XGET_", env_file=".env", extra="ignore")

    # --- where the embedded stack keeps its state -------------------------------------------
    data_dir: str = Field(".xget", description="Root for the embedded stack's data and pid files.")

    # --- Kafka ---------------------------------------------------------------------------------
    kafka_bootstrap: str = Field("127.0.0.1:9092", description="Kafka bootstrap servers.")
    topic_prefix: str = Field("", description="Prefix for every topic name (isolates test runs).")
    topic_replication_factor: int = Field(
        1,
        ge=1,
        description="Replicas of each topic `xget topics create` makes (3 on a production "
        "cluster; the local brokers have one node).",
    )
    topic_partitions: str = Field(
        "",
        description="Partition counts other than the catalogue's, as topic=count,… (e.g. "
        "raw-pages=24,posts=24: more replicas of their consumers). `xget topics create` makes "
        "them so, and every service must run with the same value: the reporter and the "
        "schedule runners work out which partition owns a task from it.",
    )
    topic_min_insync_replicas: int = Field(
        1,
        ge=1,
        description="min.insync.replicas of new topics (2 with 3 replicas: an acknowledged "
        "write survives a broker's loss).",
    )
    embedded_broker_max_mb: int = Field(
        1024,
        ge=64,
        description="Memory budget (MiB of RSS, its snapshot saves included) of the embedded "
        "noida-db broker that `make up` starts: each topic's retention.bytes (and segment "
        "size) on it is derived from this (libs/topics.py budget_configs), and the scraper "
        "waits for the parser within it, so the broker stays within it however much is "
        "collected. At 1024 it levels off after ~70k posts (raw-pages then keeps its newest "
        "~55 MiB, ~3,400 pages; the raw_data/ archive keeps them all). Not applied to other "
        "brokers.",
    )
    kafka_idempotent_producer: bool = Field(
        True,
        description="Idempotent producer. Turn off for brokers without InitProducerId v0+ (Tansu).",
    )
    kafka_group_mode: Literal["members", "assign"] = Field(
        "members",
        description=(
            "members: Kafka consumer groups with rebalancing (production; replicas scale by lag). "
            "assign: one instance per service takes every partition and commits offsets for "
            "its group without joining it; for brokers that never expire a killed member "
            "(noida-db), where a restarted member would otherwise wait forever."
        ),
    )
    kafka_empty_fetch_backoff_ms: int = Field(
        0,
        ge=0,
        description=(
            "Client-side wait after a fetch that brought nothing. 0 (production): the broker "
            "long-polls (fetch.max.wait). noida-db answers empty fetches at once, which makes "
            "every idle consumer spin a CPU core; 50 there emulates the long-poll."
        ),
    )
    kafka_empty_fetch_backoff_max_ms: int = Field(
        100,
        ge=0,
        description=(
            "The wait after empty fetches doubles from kafka_empty_fetch_backoff_ms up to this "
            "while a consumer stays idle, and drops back at its first record: a service's idle "
            "table readers then poll 10 times a second instead of 20. A hop between processes "
            "may wait this long; a record published in the same process (the embedded mode) "
            "wakes the local consumers of its topic at once."
        ),
    )
    kafka_end_offsets_from_fetch: bool = Field(
        False,
        description=(
            "Also read each partition's end from the high watermark of a fetch of its last "
            "batch (the larger of that and ListOffsets wins), for `xget lag`. On for brokers "
            "whose ListOffsets latest is wrong (Tansu answers the newest batch's base offset "
            "+ 1); costs one fetch per partition and snapshot."
        ),
    )
    kafka_session_timeout_ms: int = Field(10_000, description="Consumer group session timeout.")
    kafka_heartbeat_interval_ms: int = Field(2_000)
    kafka_max_poll_records: int = Field(500)
    kafka_linger_ms: int = Field(5)
    kafka_compression: Literal["zstd", "lz4", "gzip", "snappy", "none"] = Field(
        "zstd",
        description="Record batch compression (through cramjam). A raw X page is "
        "~185 KB of JSON; zstd cuts the broker's CPU by about 6x and its memory by 10x on "
        "the pipeline benchmark, for less CPU in the clients than it saves. 'none' turns it off.",
    )

    dependency_retry_base_s: float = Field(
        0.5,
        gt=0,
        description="A batch that failed because a dependency (ClickHouse, the object "
        "store, the broker, an HTTP server) failed is retried after a random wait of up to this, "
        "doubling per failed attempt (full jitter); its partitions pause and nothing is "
        "committed or dead-lettered meanwhile.",
    )
    dependency_retry_max_s: float = Field(
        30.0, gt=0, description="The longest wait between two retries of a dependency failure."
    )

    # --- ClickHouse ----------------------------------------------------------------------------
    clickhouse_dsn: str = Field(
        "chdb://.xget/clickhouse",
        description="chdb://PATH for the embedded engine or http(s)://user:pass@host:8123/db.",
    )
    clickhouse_slow_query_ms: float = Field(
        2000.0,
        ge=0,
        description="A ClickHouse call taking longer than this (its wait behind the calls before "
        "it included) is logged as a WARNING with the head of its SQL (never its parameters).",
    )

    # --- object storage ------------------------------------------------------------------------
    object_store_url: str = Field(
        "file://.xget/objects",
        description="file://DIR, or s3://BUCKET for an S3 API (MinIO, moto_server) at s3_endpoint.",
    )
    s3_endpoint: str = Field("127.0.0.1:9000", description="host:port of the S3 API.")
    s3_access_key: SecretStr = Field(SecretStr("xget"), description="S3 access key.")
    s3_secret_key: SecretStr = Field(SecretStr("xget-secret"), description="S3 secret key.")
    s3_secure: bool = Field(False, description="Use TLS for the S3 API.")
    s3_region: str = Field("us-east-1")

    # --- X ---------------------------------------------------------------------------------------
    x_graphql_url: str = Field(
        "https://x.com/i/api/graphql",
        description="Base URL of X's web GraphQL API (the simulator's /i/api/graphql here).",
    )
    x_media_base: str = Field(
        "",
        description="Replaces https://pbs.twimg.com in media URLs when set (simulator, mirror).",
    )
    x_video_base: str = Field(
        "",
        description="Replaces https://video.twimg.com in video URLs when set (simulator, mirror).",
    )
    x_transaction_id: Literal["twscrape", "static"] = Field(
        "twscrape",
        description="x-client-transaction-id: twscrape's generator (fetches x.com) or a static one.",
    )
    x_accounts: SecretStr = Field(
        SecretStr(""),
        description="Accounts as 'name:auth_token:ct0' entries separated by commas; the "
        "account-manager adds those it does not know yet when it starts.",
    )
    x_rate_limits: str = Field(
        "SearchTimeline:50,Followers:50,Following:500,TweetDetail:150,UserByScreenName:95,"
        "Retweeters:500",
        description="Requests per account per window for each X operation ('Op:n,…'); "
        "x-rate-limit-* headers override them when present.",
    )
    x_rate_default_limit: int = Field(50, ge=1, description="Limit of operations not listed.")
    x_rate_window_s: int = Field(900, ge=1, description="X's rate-limit window (15 minutes).")
    x_login_url: str = Field(
        "https://x.com/i/flow/login", description="X's login page (the simulator's here)."
    )
    chromium_path: str = Field("/usr/bin/chromium", description="Chromium for Playwright logins.")
    x_request_timeout_s: float = Field(30.0)
    x_op_search_timeline: str = Field(
        "hyPfJYJ_XAtDYoslQc-Rgg/SearchTimeline",
        description="GraphQL operation id/name; X rotates ids, so they are configuration.",
    )
    x_page_size: int = Field(20, description="Posts asked per search page.")
    x_op_following: str = Field(
        "qGZZDF3mp91q7X22s3HxpA/Following",
        description="GraphQL operation id/name of X's Following list (KOL followings, x source).",
    )
    x_op_user_by_screen_name: str = Field(
        "Gb-d6r0vxPOADdG62OEBpQ/UserByScreenName",
        description="GraphQL operation id/name that resolves a handle to a user id.",
    )
    x_op_retweeters: str = Field(
        "ROjiuYueotTnWoI8m2YaiQ/Retweeters",
        description="GraphQL operation id/name of X's Retweeters list (retweeters tasks).",
    )

    # --- task gateway --------------------------------------------------------------------------
    gateway_host: str = Field("127.0.0.1")
    gateway_port: int = Field(8080)
    api_token: SecretStr = Field(
        SecretStr(""),
        description="Bearer token the client sends on every API call. Required: the gateway "
        "and the account-manager refuse to start without one (`make up` generates "
        "it into DATA/api.token).",
    )
    insecure_dev_defaults: bool = Field(
        False,
        description="Local development only: services start although the API token, webhook "
        "secret or account key is empty or a well-known default (it is logged). "
        "Never in production.",
    )

    # --- web console (services/task_gateway/console_*.py) ------------------------------------
    console_session_ttl_s: int = Field(
        8 * 3600, ge=60, description="A console sign-in lasts this long (the cookie's Max-Age)."
    )
    console_lockout_failures: int = Field(
        5, ge=1, description="Wrong passwords in a row after which a console user is locked."
    )
    console_lockout_s: int = Field(
        900, ge=1, description="How long a locked console user's sign-in is refused (429)."
    )
    console_dist_dir: str = Field(
        "web/dist", description="The built console (npm run build) served at /console/."
    )
    account_admin_url: str = Field(
        "",
        description="Base URL of the account-manager's admin API: the gateway forwards "
        "/api/v1/admin/accounts|proxies to it and reads /api/v1/admin/stats' pool figures "
        "from it; empty: http://account_admin_host:account_admin_port.",
    )
    log_ship_level: str = Field(
        "WARNING", description="Log records at or above this level go to the service-logs topic."
    )
    log_ship_per_minute: int = Field(
        120,
        ge=0,
        description="At most this many log records a minute per process go to service-logs "
        "(the rest are counted as dropped); 0 ships none.",
    )

    # --- gateway input limits: anything beyond is a 422 naming the field ---------------------
    api_max_window_days: int = Field(
        366,
        ge=1,
        description="Longest task window (end_time - start_time), in days; also "
        "the longest `hours` of the trending query.",
    )
    api_max_slices_per_task: int = Field(
        400, ge=1, description="Day slices (search jobs) one task may be cut into."
    )
    api_max_required_count: int = Field(
        1_000_000, ge=1, description="Largest required_count of a task."
    )
    api_earliest_time: datetime = Field(
        datetime(2006, 3, 21, tzinfo=UTC),
        description="Earliest time a request may name (X's first day).",
    )
    api_latest_time: datetime = Field(
        datetime(2100, 1, 1, tzinfo=UTC), description="Latest time a request may name."
    )
    api_max_number: int = Field(
        1_000_000_000,
        ge=1,
        description="Ceiling of every other number a request carries (min_likes, "
        "filters.min_faves, a KOL task's limit, …).",
    )
    api_max_offset: int = Field(1_000_000, ge=0, description="Largest `offset` of a listing.")
    api_max_page_size: int = Field(1000, ge=1, description="Largest `limit` of a listing.")
    api_exact_total_limit: int = Field(
        10_000,
        ge=0,
        description="A post search reads at most one more than this many stored matches to "
        "count its `total`: exact when that was all of them, else a lower bound (at least that "
        "many posts match; X-Total-Count-Exact: false) unless exact_total=true is asked.",
    )
    api_max_string_length: int = Field(
        1024, ge=16, description="Longest string in a request (path, query or body)."
    )
    api_max_list_items: int = Field(
        1000, ge=1, description="Most items of a list in a request body (handles, filters)."
    )
    api_retry_after_s: int = Field(
        5, ge=1, description="Retry-After of a 503 (a dependency is unreachable)."
    )
    api_dependency_timeout_s: float = Field(
        10.0, gt=0, description="How long a request waits for the broker before a 503."
    )
    api_default_window_days: int = Field(
        7,
        ge=1,
        description="Window of a POST /api/v1/tasks/search without start/end: the last this "
        "many days (the design's request has no window).",
    )
    health_ready_urls: str = Field(
        "",
        description="Readiness URLs /api/v1/admin/health checks, as name=url,… (e.g. "
        "parser=http://parser:9100/readyz). The gateway's own process is always checked.",
    )

    estimate_posts_per_hour: float = Field(
        60.0, description="Assumed post density for estimates when required_count is 0."
    )
    task_priority_aging_s: float = Field(
        60.0,
        gt=0,
        description="A waiting request gains one priority level per this many "
        "seconds, so low-priority tasks are never starved.",
    )
    task_priority_hold_s: float = Field(
        1.0,
        ge=0,
        description="After a task's request, lower priorities wait this long for "
        "its next one before taking the budget it would use.",
    )
    schedule_time_scale: float = Field(
        1.0, gt=0, description="Scales scheduled tasks' periods (tests run an hour in seconds)."
    )
    schedule_tick_s: float = Field(1.0, gt=0, description="How often due scheduled runs fire.")
    cost_per_x_request_usd: float = Field(
        0.0002, ge=0, description="Estimated cost of one X request (accounts, proxies) for quotes."
    )
    cost_per_post_usd: float = Field(
        0.00002, ge=0, description="Estimated cost of storing and reporting one post."
    )
    estimate_seconds_per_page: float = Field(
        1.0, description="Assumed seconds per X page for completion estimates."
    )
    # --- pricing (the design's calculator; services/task_gateway/pricing.py) ------------------
    pricing_query_costs: str = Field(
        "standard_query:0.016,single_tweet:0.05,profile_query:0.016,search_query:0.016",
        description="Base price per query by kind, 'kind:usd,...' (the design's QUERY_COSTS).",
    )
    pricing_tiers: str = Field(
        "5:0.0004,10:0.0008,30:0.0012,100:0.0016,inf:0.002",
        description="Price per paid item by the queries in a request, 'max_queries:usd,...' "
        "in rising order, the last 'inf' (the design's five tiers).",
    )
    pricing_free_items_per_query: int = Field(
        40, ge=0, description="Items included in each query's base price (the first 2 pages)."
    )
    cost_x_request_usd_by_operation: str = Field(
        "",
        description="Actual cost per X request by operation, 'SearchTimeline:0.0002,...'; "
        "an operation not named costs cost_per_x_request_usd.",
    )
    cost_per_media_gb_usd: float = Field(
        0.02, ge=0, description="Actual cost of one GB of media stored (object store, traffic)."
    )

    # --- scraper ---------------------------------------------------------------------------------
    scraper_concurrency: int = Field(
        8,
        description="Slices a scraper replica pages in parallel; a slice parked waiting for an "
        "account (or paused) holds no slot.",
    )
    scraper_max_parked: int = Field(
        1000, ge=0, description="Parked slices a replica keeps before it takes no more jobs."
    )
    scraper_max_parser_lag_pages: int = Field(
        0,
        ge=0,
        description="The scraper asks X for no further page while the parser has more than "
        "this many raw pages unread (its committed offsets on raw-pages), so the broker holds "
        "at most that much of a lag; the parser is the pipeline's slowest stage, so nothing "
        "is collected later for it. make up sets 500 on the embedded broker (its memory "
        "budget); 0 = no limit.",
    )
    scraper_max_parser_lag_bytes: int = Field(
        0,
        ge=0,
        description="The scraper asks X for no further page while the parser has more than "
        "this many bytes unread on any one raw-pages partition (from the broker's log sizes). "
        "make up sets it from XGET_EMBEDDED_BROKER_MAX_MB on the embedded broker (an eighth of "
        "raw-pages' retention.bytes: the retention guard then never needs to raise it, and "
        "the broker stays within its budget); 0 = no limit.",
    )
    scraper_split_pages: int = Field(
        50,
        ge=0,
        description="Pages a slice part aims at: a slice whose first page shows the "
        "rest needs at least twice this many is cut into parts of whole "
        "hours with about this many pages each, run in parallel "
        "(0 = never cut).",
    )

    # --- account-manager and the scrapers' leases ----------------------------------------------
    account_key: SecretStr = Field(
        SecretStr(""),
        description="Encrypts account and proxy secrets at rest and on Kafka (a Fernet key, or a "
        "passphrase it is derived from). Required by the account-manager, the "
        "scraper and `xget accounts|proxies`.",
    )
    account_admin_host: str = Field("127.0.0.1", description="Admin API of the account-manager.")
    account_admin_port: int = Field(8081)
    account_lease_ttl_s: float = Field(
        60.0,
        gt=0,
        description="A lease ends by itself this long after its grant (or at the "
        "window reset), so a dead scraper's account frees up.",
    )
    account_lease_max_budget: int = Field(
        100,
        ge=1,
        description="Requests one lease allows at most; a dead scraper's lease "
        "counts in full, so this bounds what a crash costs an account.",
    )
    account_reset_margin_s: float = Field(
        0.5, ge=0, description="Wait this long after a window's reset before leasing again."
    )
    account_min_health: float = Field(
        0.3, ge=0, le=1, description="Accounts below this health score get no leases."
    )
    account_cooldown_s: float = Field(
        120.0, ge=0, description="Cooldown after a Cloudflare/TLS block or a failed login."
    )
    account_request_wait_s: float = Field(
        20.0,
        gt=0,
        description="A scraper's lease request stays queued this long, then it asks again.",
    )
    account_idle_release_s: float = Field(
        1.0, ge=0, description="A scraper gives back a lease nobody used for this long."
    )
    account_test_query: str = Field("from:x", description="Search `xget accounts test` sends.")
    account_idle_check_s: float = Field(
        600.0,
        ge=0,
        description="An account unused (and unchecked) this long is checked with one cheap "
        "request (UserByScreenName of itself), so a dead account is found before a task "
        "needs it; 0 turns the checks off.",
    )
    account_cookie_max_age_s: float = Field(
        14 * 86400.0,
        gt=0,
        description="How long the cookies of a manager login last when the login page does "
        "not say (password accounts).",
    )
    account_cookie_refresh_s: float = Field(
        86400.0,
        ge=0,
        description="A password account logs in again this long before its cookies expire.",
    )
    proxy_check_url: str = Field(
        "https://x.com/robots.txt", description="URL fetched through each proxy to check it."
    )
    proxy_check_interval_s: float = Field(30.0, gt=0, description="Seconds between proxy checks.")
    proxy_dead_after: int = Field(
        2, ge=1, description="Failed checks in a row after which a proxy is dead and replaced."
    )
    # --- alerts (libs/alerts.py; evaluated in the gateway, the same rules as Prometheus') --------
    alert_webhook_url: str = Field(
        "",
        description="Where the gateway's alert evaluator POSTs each firing and resolved alert "
        "(Alertmanager's webhook JSON, signed like reports); empty: shown only in "
        "GET /api/v1/admin/alerts and the log.",
    )
    alert_eval_interval_s: float = Field(
        30.0, gt=0, description="Seconds between two evaluations of the alert conditions."
    )
    alert_for_s: float = Field(
        60.0, ge=0, description="A condition must hold this long before its alert fires."
    )
    alert_healthy_accounts_min_share: float = Field(
        0.3, ge=0, le=1, description="Alert when fewer accounts than this share are healthy."
    )
    alert_min_usable_accounts: int = Field(
        5, ge=0, description="Alert when fewer accounts than this can take a lease."
    )
    alert_error_rate_max: float = Field(
        0.2,
        ge=0,
        le=1,
        description="Alert when more than this share of X requests fail (rate limits "
        "excepted) within alert_error_window_s.",
    )
    alert_error_window_s: float = Field(
        600.0, gt=0, description="The window of the X and proxy error rates."
    )
    alert_error_min_requests: int = Field(
        20, ge=1, description="Error rates are judged only over at least this many requests."
    )
    alert_healthy_proxies_min_share: float = Field(
        0.3,
        ge=0,
        le=1,
        description="Alert when fewer enabled proxies than this share are usable (only when "
        "proxies are configured).",
    )
    alert_min_usable_proxies: int = Field(
        1,
        ge=0,
        description="Alert when fewer proxies than this are usable (only when proxies are "
        "configured).",
    )
    alert_proxy_error_rate_max: float = Field(
        0.2,
        ge=0,
        le=1,
        description="Alert when more than this share of a window's requests through "
        "proxies fail because of the proxy.",
    )
    alert_consumer_lag_max: int = Field(
        10_000, ge=0, description="Alert when a consumer group lags more records on a topic."
    )
    alert_dead_letters_window_s: float = Field(
        900.0,
        gt=0,
        description="Alert while a dead letter arrived within this many seconds.",
    )
    alert_task_stuck_s: float = Field(
        1800.0,
        gt=0,
        description="Alert when a pending or running task collected nothing new for this long.",
    )
    alert_recent_kept: int = Field(
        200, ge=1, description="Resolved alerts GET /api/v1/admin/alerts keeps as 'recent'."
    )

    # --- dedup-counter ---------------------------------------------------------------------------
    counter_batch_max: int = Field(5_000, description="Posts per ClickHouse insert at most.")
    counter_batch_max_bytes: int = Field(
        16 * 1024 * 1024,
        ge=1,
        description="Bytes of posts records (with their raw JSON) per ClickHouse insert at most "
        "(~1,500 posts of ~11 KB). The counter holds ~60 KB per post of a batch while it "
        "writes it, so this, not the lag it catches up on, sets its memory.",
    )
    parser_batch_pages: int = Field(
        8,
        ge=1,
        description="Raw pages the parser handles as one batch (its posts go out, then the "
        "offsets are committed). A page is ~185 KB and ~4 ms of parsing: small "
        "batches hand posts to the dedup-counter sooner and bound the parser's "
        "memory.",
    )
    parser_user_resend_s: float = Field(
        600,
        ge=0,
        description="A user met again unchanged (same raw JSON) is published again only after "
        "this long, so users.seen_at is at most this stale; 0 publishes every "
        "sighting. Authors repeat page after page in a keyword search.",
    )
    counter_fill_ms: int = Field(
        100,
        ge=0,
        description="After posts arrive, wait up to this long for more before writing: "
        "ClickHouse prefers fewer, larger inserts.",
    )

    # --- KOL following lists (xget kol-followings, kol-worker) --------------------------------
    kol_x_accounts: Literal["manager", "local"] = Field(
        "manager",
        description="Where the x source's accounts come from: leased from the account-manager "
        "(shared with the scrapers, limits kept), or 'local': XGET_X_ACCOUNTS used "
        "directly by this process (a one-off run without the stack).",
    )
    kol_source: Literal["x", "api"] = Field(
        "api",
        description=(
            "Where KOL followings come from: x = X's Following operation through the account "
            "pool; api = a paid twitterapi.io-style REST API (kol_api_*)."
        ),
    )
    kol_api_base_url: str = Field(
        "https://api.twitterapi.io",
        description="Base URL of the followings REST API (GET /twitter/user/followings).",
    )
    kol_api_key: SecretStr = Field(
        SecretStr(""), description="API key sent as X-API-Key (or `--api-key`). Never logged."
    )
    kol_api_interval_s: float = Field(
        2.0, ge=0, description="Minimum seconds between two calls to the followings API."
    )
    kol_api_page_size: int = Field(
        200, ge=20, le=200, description="Followings asked per API page (the API's pageSize)."
    )
    kol_api_price_per_call: float = Field(
        0.002,
        ge=0,
        description="Estimated USD per successful API call (200 followings at 1 credit each).",
    )
    kol_x_page_size: int = Field(20, ge=1, le=100, description="Users asked per X Following page.")
    kol_concurrency: int = Field(1, ge=1, description="KOLs fetched in parallel.")
    kol_max_failures: int = Field(
        6, ge=1, description="Failed calls in a row for one KOL before the run gives up on it."
    )
    kol_store_retry_s: float = Field(
        10.0, ge=0, description="Wait before trying ClickHouse again after a failed write."
    )
    # --- reporter and the client's webhook -----------------------------------------------------
    report_batch_size: int = Field(100, ge=1, description="Posts per batch report at most.")
    report_max_wait_s: float = Field(
        30.0, gt=0, description="A smaller batch is sent once its oldest post waited this long."
    )
    report_media_wait_s: float = Field(
        120.0,
        ge=0,
        description="How long a batch waits for its media to land before it is sent without them.",
    )
    report_pause_s: float = Field(
        300.0,
        gt=0,
        description="After next_batch_allowed=false, reports of that task resume after this long "
        "(or when the client asks: POST /api/v1/tasks/{id}/reports/resume).",
    )
    report_tick_s: float = Field(0.5, gt=0, description="How often the reporter re-checks a task.")
    webhook_url: str | None = Field(
        None, description="Global webhook for tasks without their own callback_url."
    )
    webhook_secret: SecretStr = Field(
        SecretStr(""),
        description="HMAC-SHA256 key of the X-XGet-Signature header the client verifies. "
        "Required: the reporter refuses to start without one (`make up` generates "
        "it into DATA/webhook.secret).",
    )
    webhook_allow_hosts: str = Field(
        "",
        description="Comma-separated hosts or CIDRs a webhook may use although private or "
        "loopback (e.g. '127.0.0.1,10.0.0.0/8'). Empty: only public addresses.",
    )
    webhook_timeout_s: float = Field(10.0, gt=0, description="Per-attempt webhook timeout.")
    webhook_max_attempts: int = Field(
        0,
        ge=0,
        description="Attempts before a report goes to the dead-letter topic; 0 (the "
        "default): no cap, only webhook_give_up_after_s ends the retries, so an endpoint down "
        "for minutes or hours gets its reports when it is back.",
    )
    webhook_give_up_after_s: float = Field(
        86_400.0,
        gt=0,
        description="A report whose webhook keeps failing transiently "
        "(connection, timeout, 408/425/429, 5xx) is retried this long, then dead-lettered "
        "(`xget reports replay` sends it again). A 4xx other than those is final at once.",
    )
    webhook_backoff_base_s: float = Field(
        0.5, gt=0, description="First retry delay; doubles per attempt, with full jitter."
    )
    webhook_backoff_max_s: float = Field(60.0, gt=0, description="Longest retry delay.")

    # --- media-downloader ------------------------------------------------------------------------
    media_concurrency: int = Field(16, ge=1, description="Downloads in flight per replica.")
    media_max_image_bytes: int = Field(
        50 * 1024 * 1024, ge=1, description="Size cap of an image, GIF thumbnail or video cover."
    )
    media_max_video_bytes: int = Field(
        512 * 1024 * 1024, ge=1, description="Size cap of a video (download_video tasks)."
    )
    media_timeout_s: float = Field(
        30.0, gt=0, description="Connect/read timeout of one media request (between bytes)."
    )
    media_attempts: int = Field(
        4, ge=1, description="Tries per media URL for transient errors (connect, 5xx, 429)."
    )
    media_backoff_s: float = Field(
        0.5, ge=0, description="First retry delay; doubles each attempt (Retry-After wins)."
    )
    media_index_gc_s: float = Field(
        300.0,
        ge=0,
        description="How often the media-downloader deletes its batch index objects that lie "
        "wholly below the committed offset (0: after every batch).",
    )
    media_recent_urls: int = Field(
        50_000,
        ge=0,
        description="URLs whose stored result a replica remembers, so media reused by later "
        "posts is not downloaded again.",
    )

    # --- operations: metrics, health -----------------------------------------------------------
    metrics_host: str = Field(
        "127.0.0.1", description="Address of the process's /metrics, /livez and /readyz server."
    )
    metrics_port: int = Field(
        9100,
        ge=0,
        description="Port of /metrics, /livez, /readyz: one per process (the services of an "
        "embedded process share it). 0 turns it off; a port in use is logged and "
        "skipped, never fatal.",
    )

    trace_exporter: Literal["none", "console", "file", "otlp"] = Field(
        "none",
        description="Where spans go: otlp (a collector at otlp_endpoint), file (JSON lines in "
        "trace_file), console, or none.",
    )
    trace_file: str = Field(".xget/traces.jsonl", description="Span file of the file exporter.")
    otlp_endpoint: str = Field(
        "http://127.0.0.1:4318", description="OTLP/HTTP endpoint of the collector (traces)."
    )
    log_format: Literal["text", "json"] = Field(
        "text", description="json: one JSON object per log line, with trace_id where known."
    )

    log_level: str = Field("INFO")
    event_loop: Literal["uvloop", "asyncio"] = Field(
        "uvloop",
        description="Event loop of `xget` commands: uvloop (libuv; measured 4-6% less CPU per "
        "scraped page than asyncio's own loop) or asyncio.",
    )
    gc_gen0_threshold: int = Field(
        20_000,
        ge=0,
        description="Allocations between two young-generation runs of Python's cyclic garbage "
        "collector in `xget` commands (Python's default is 700). Parsing one X page "
        "builds thousands of dicts, so the default collects many times a page for "
        "nothing (the pages hold no cycles): 20,000 measured ~8% less CPU per parsed "
        "page. 0 keeps Python's default.",
    )
    malloc_trim_interval_s: float = Field(
        10.0,
        ge=0,
        description="Seconds between two malloc_trim(0) calls in `xget` commands "
        "(libs/allocator.py): the freed space that bursts of page-sized buffers leave in "
        "glibc's heap goes back to the system (the gateway+scraper of a 1M-post task grew "
        "from ~210 to ~390-590 MiB and kept it). 0: never; ignored where the C library is not "
        "glibc.",
    )

    @field_validator("topic_partitions")
    @classmethod
    def _partition_counts(cls, v: str) -> str:
        from .topics import CATALOGUE

        known = {s.name for s in CATALOGUE}
        for part in filter(None, (p.strip() for p in v.split(","))):
            name, _, n = part.partition("=")
            if name.strip() not in known:
                raise ValueError(f"topic_partitions: no topic {name.strip()!r} in the catalogue")
            if not n.strip().isdigit() or int(n) < 1:
                raise ValueError(f"topic_partitions: {part!r} needs a count of 1 or more")
        return v

    def partition_counts(self) -> dict[str, int]:
        """Topic name -> partitions, where the settings differ from the catalogue."""
        out = {}
        for part in filter(None, (p.strip() for p in self.topic_partitions.split(","))):
            name, _, n = part.partition("=")
            out[name.strip()] = int(n)
        return out

    @field_validator("api_earliest_time", "api_latest_time")
    @classmethod
    def _utc_bound(cls, v: datetime) -> datetime:
        """A bound given without a zone ('2100-01-01') is UTC, so it compares with requests."""
        return v.replace(tzinfo=UTC) if v.tzinfo is None else v

    def rate_limit(self, operation: str) -> int:
        """The configured per-window limit of an X operation."""
        for part in filter(None, (p.strip() for p in self.x_rate_limits.split(","))):
            op, _, n = part.partition(":")
            if op.strip() == operation:
                return int(n)
        return self.x_rate_default_limit


def env_example() -> str:
    """`.env.example`: every variable with its default and description, from the model itself."""
    lines = [
        "# XGet settings: every variable with its default. Copy to .env and edit.",
        "# Generated by `python -m libs.settings > .env.example`; a test keeps it in sync.",
    ]
    for name, field in Settings.model_fields.items():
        if field.description:
            lines.append(f"# {field.description}")
        default = field.default
        if isinstance(default, SecretStr):
            default = default.get_secret_value()
        var = f"XGET_{name.upper()}"
        if default is None:
            lines.append(f"# {var}=")
        elif isinstance(default, bool):
            lines.append(f"{var}={str(default).lower()}")
        elif isinstance(default, (list, tuple)):
            lines.append(f"{var}={','.join(map(str, default))}")
        else:
            lines.append(f"{var}={default}")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(env_example(), end="")
