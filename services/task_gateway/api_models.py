"""The gateway's response bodies as pydantic models, for the OpenAPI document (with examples)
and as the contract the tests hold the answers to. Field names and types follow the client's
design (seeds/xget-design.md "API服务设计" and "业务API接口设计"); our extra fields are declared
too, and every model allows more (extra="allow") so an answer is never cut to the model.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

# Tags of the OpenAPI document, one per area.
TAG_TASKS = "tasks"
TAG_STATISTICS = "statistics"
TAG_ADMIN = "admin"
TAG_DATA = "data"


def open_model(example: dict) -> ConfigDict:
    """A response model's config: extra fields allowed (ours beside the design's), and its
    example in the OpenAPI document."""
    return ConfigDict(extra="allow", json_schema_extra={"examples": [example]})


class FieldProblem(BaseModel):
    field: str | None = Field(description="The parameter or body field, dotted for nested ones.")
    message: str


class Rejection(BaseModel):
    """Every 422 of the gateway: an invalid, out-of-range or unknown parameter or field."""

    model_config = open_model(
        {
            "status": "rejected",
            "detail": [
                {
                    "field": "colour",
                    "message": "unknown query parameter; this route takes: limit, offset",
                }
            ],
        }
    )
    status: Literal["rejected"]
    detail: list[FieldProblem]


class Problem(BaseModel):
    """401, 404, 409: what is wrong."""

    model_config = open_model({"detail": "no task od-0123456789abcdef"})
    detail: str


class Unavailable(BaseModel):
    """503: a dependency (broker, ClickHouse, object store) is down; retry after Retry-After."""

    model_config = ConfigDict(extra="allow")


ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": Problem, "description": "Missing or wrong bearer token"},
    422: {"model": Rejection, "description": "A parameter or field is invalid or unknown"},
    503: {"model": Unavailable, "description": "A dependency is unavailable (Retry-After)"},
}
NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"model": Problem, "description": "No such"}}
CONFLICT: dict[int | str, dict[str, Any]] = {
    409: {"model": Problem, "description": "Same task id, different body"}
}

# --- tasks ------------------------------------------------------------------------------------


class Estimate(BaseModel):
    model_config = ConfigDict(extra="allow")
    posts: int = Field(description="What the task collects: posts, users or followings.")
    x_requests: int = Field(description="Requests to X (or the KOL source) it will take.")
    seconds: float
    basis: str
    cost_usd: dict[str, float]


class TaskCreated(BaseModel):
    """Design: {status: "success", task_id, message, estimated_completion | next_execution}."""

    model_config = open_model(
        {
            "status": "success",
            "task_id": "task_20240101_002",
            "message": "按需搜索任务创建成功: collecting 'ChatGPT'",
            "estimated_completion": "2024-01-01T12:00:00Z",
            "estimate": {
                "posts": 1000,
                "x_requests": 50,
                "seconds": 50.0,
                "basis": "2 active account(s) at 50 requests per 900 s",
                "cost_usd": {"x_requests": 0.05, "posts": 0.4, "total": 0.45},
            },
        }
    )
    status: Literal["success"]
    task_id: str
    message: str
    estimated_completion: datetime = Field(
        description="When the task (a scheduled task: its next run) should be done."
    )
    next_execution: datetime | None = Field(
        None, description="Scheduled tasks: when the next run fires."
    )
    estimate: Estimate


class TaskProgressOut(BaseModel):
    model_config = ConfigDict(extra="allow")
    total: int = Field(description="Target: required count (0 = all there is), or KOLs.")
    collected: int
    failed: int = Field(
        description="Day slices X kept refusing (KOL tasks: KOLs whose list failed)."
    )
    percentage: float
    target: int = Field(description="Same as total (the status endpoint's name).")


TASK_EXAMPLE: dict = {
    "task_id": "task_20240101_002",
    "type": "keyword_search",
    "status": "running",
    "parameters": {
        "keyword": "ChatGPT",
        "required_count": 1000,
        "priority": 2,
        "start_time": "2024-01-01T00:00:00Z",
        "end_time": "2024-01-01T23:59:59Z",
    },
    "progress": {
        "total": 1000,
        "collected": 856,
        "failed": 0,
        "percentage": 85.6,
        "target": 1000,
    },
    "created_at": "2024-01-01T08:00:00Z",
    "started_at": "2024-01-01T08:00:02Z",
    "completed_at": None,
    "error_message": None,
    "updated_at": "2024-01-01T10:30:00Z",
    "mode": "ondemand",
    "keyword": "ChatGPT",
    "priority": 2,
}


class TaskOut(BaseModel):
    """Design's TaskResponse, plus our status details (reason, waiting_for_accounts, runs…)."""

    model_config = open_model(TASK_EXAMPLE)
    task_id: str
    type: str = Field(
        description="keyword_search, user_timeline, user_profile (the design's), quotes, "
        "retweeters or kol_followings."
    )
    status: str = Field(
        description="pending, running, completed, failed, cancelled (the design's), scheduled, "
        "waiting_for_accounts, paused, rejected."
    )
    parameters: dict[str, Any]
    progress: TaskProgressOut | None
    created_at: datetime | None
    started_at: datetime | None
    completed_at: datetime | None
    error_message: str | None
    updated_at: datetime | None
    mode: Literal["ondemand", "scheduled", "kol"]
    keyword: str | None = None
    priority: int | None = None


class TaskStatusOut(BaseModel):
    """Design's status: {task_id, status, progress {collected, target, percentage}, ...}."""

    model_config = open_model(
        {
            "task_id": "task_20240101_001",
            "status": "running",
            "progress": {"collected": 856, "target": 1000, "percentage": 85.6},
            "created_at": "2024-01-01T08:00:00Z",
            "updated_at": "2024-01-01T10:30:00Z",
        }
    )
    task_id: str
    status: str
    progress: dict[str, Any]
    created_at: datetime | None
    updated_at: datetime | None


class ReportsResumed(BaseModel):
    model_config = open_model(
        {"status": "accepted", "task_id": "task_20240101_001", "message": "reports resume"}
    )
    status: Literal["accepted"]
    task_id: str
    message: str


class ProgressOut(TaskStatusOut):
    """The status, with the design's TaskProgress (total, collected, failed, percentage) at
    the top level and the slices' figures."""

    model_config = open_model(
        {
            "task_id": "task_20240101_001",
            "status": "running",
            "progress": {"collected": 856, "target": 1000, "percentage": 85.6},
            "created_at": "2024-01-01T08:00:00Z",
            "updated_at": "2024-01-01T10:30:00Z",
            "total": 1000,
            "collected": 856,
            "failed": 0,
            "percentage": 85.6,
            "slices_done": 0,
            "slice_count": 1,
            "end_reason": None,
        }
    )
    total: int
    collected: int
    failed: int
    percentage: float


class CancelOut(TaskStatusOut):
    """The design's {message, task_id}, with the task's status."""

    model_config = open_model(
        {
            "message": "任务已取消",
            "task_id": "task_20240101_001",
            "status": "cancelled",
            "progress": {"collected": 856, "target": 1000, "percentage": 85.6},
            "created_at": "2024-01-01T08:00:00Z",
            "updated_at": "2024-01-01T10:30:00Z",
        }
    )
    message: str


# --- statistics -------------------------------------------------------------------------------


KEYWORD_MONTH_EXAMPLE: dict = {
    "keyword": "人工智能",
    "year": 2024,
    "month": 1,
    "unique_posts_count": 856,
    "period": "2024-01",
    "calculated_at": "2024-02-01T00:00:00Z",
}


class KeywordMonth(BaseModel):
    model_config = open_model(KEYWORD_MONTH_EXAMPLE)
    keyword: str
    year: int
    month: int
    unique_posts_count: int
    period: str
    calculated_at: datetime


class MonthlyAll(BaseModel):
    model_config = open_model(
        {"period": "2024-01", "total_keywords": 1, "statistics": [KEYWORD_MONTH_EXAMPLE]}
    )
    period: str
    total_keywords: int
    statistics: list[KeywordMonth]


class TaskStatistics(BaseModel):
    model_config = open_model(
        {
            "task_id": "task_20240101_001",
            "total_collected": 856,
            "unique_posts": 850,
            "duplicate_rate": 0.007,
            "task_status": "completed",
            "keyword": "人工智能",
            "created_at": "2024-01-01T08:00:00Z",
            "completed_at": "2024-01-01T10:30:00Z",
        }
    )
    task_id: str
    total_collected: int
    unique_posts: int
    duplicate_rate: float
    task_status: str
    keyword: str | None
    created_at: datetime | None
    completed_at: datetime | None


# --- data -------------------------------------------------------------------------------------


class UserInfoOut(BaseModel):
    model_config = ConfigDict(extra="allow")
    user_id: str
    username: str
    display_name: str
    verified: bool
    followers_count: int


class MediaItemOut(BaseModel):
    model_config = ConfigDict(extra="allow")
    type: str
    url: str = Field(description="Our stored copy when there is one, else X's URL.")
    width: int | None
    height: int | None


TWEET_EXAMPLE: dict = {
    "tweet_id": "1875432100123456789",
    "text": "Trying the new model today #ChatGPT",
    "user": {
        "user_id": "44196397",
        "username": "someone",
        "display_name": "Some One",
        "verified": False,
        "followers_count": 1200,
        "profile_image_url": "https://pbs.twimg.com/profile_images/1/a.jpg",
    },
    "like_count": 12,
    "retweet_count": 3,
    "reply_count": 1,
    "quote_count": 0,
    "view_count": 950,
    "hashtags": ["ChatGPT"],
    "mentions": [],
    "urls": ["https://example.org/post"],
    "media": [],
    "created_at": "2024-01-01T09:15:00Z",
    "collected_at": "2024-01-01T09:20:02Z",
    "post_id": "1875432100123456789",
    "post_url": "https://x.com/someone/status/1875432100123456789",
    "post_content": "Trying the new model today #ChatGPT",
    "author_handle": "@someone",
    "keyword": "ChatGPT",
    "task_id": "task_20240101_002",
}


class TweetOut(BaseModel):
    """Design's TweetResponse, next to our post record (post_id, post_content, author_*, …;
    `fields=` answers a subset)."""

    model_config = open_model(TWEET_EXAMPLE)
    tweet_id: str
    text: str
    user: UserInfoOut
    like_count: int
    retweet_count: int
    reply_count: int
    quote_count: int
    view_count: int | None
    hashtags: list[str]
    mentions: list[str]
    urls: list[str]
    media: list[MediaItemOut]
    created_at: datetime
    collected_at: datetime


# --- admin ------------------------------------------------------------------------------------


ACCOUNT_EXAMPLE = {
    "account_id": "newsbot",
    "username": "newsbot",
    "status": "active",
    "health_score": 0.97,
    "success_rate": 0.991,
    "daily_used": 412,
    "daily_limit": 4800,
    "last_used": "2026-12-06T08:30:00Z",
    "enabled": True,
    "priority": "normal",
    "tags": ["news"],
}
PROXY_EXAMPLE = {
    "proxy_id": "socks5-10.0.0.7-1080",
    "host": "10.0.0.7",
    "port": 1080,
    "type": "socks5",
    "location": "us",
    "status": "healthy",
    "latency_ms": 182,
    "success_rate": 0.98,
}


class AccountOut(BaseModel):
    """Design's AccountResponse, next to the account-manager's view (enabled, priority, tags,
    caps, per-operation windows, counts; never a secret)."""

    model_config = open_model(ACCOUNT_EXAMPLE)
    account_id: str
    username: str
    status: str
    health_score: float
    success_rate: float = Field(description="1.0 before any request, as the design computes it.")
    daily_used: int = Field(description="Requests today (UTC), over every X operation.")
    daily_limit: int = Field(
        description="Over the X operations it serves: its daily cap, or X's window limit "
        "times the windows in a day."
    )
    last_used: datetime | None


class ProxyOut(BaseModel):
    """Design's ProxyResponse, next to the account-manager's view (requests, failures, region,
    provider, cost, expiry; never its credentials)."""

    model_config = open_model(PROXY_EXAMPLE)
    proxy_id: str
    host: str
    port: int
    type: str = Field(description="http, https, socks4, socks5 or socks5h.")
    location: str
    status: str
    latency_ms: int | None = Field(description="Of the last good check; null before one.")
    success_rate: float


class SystemStats(BaseModel):
    """Design's SystemStats, plus the parts it sums (tasks, posts, accounts, proxies,
    throughput)."""

    model_config = open_model(
        {
            "total_tweets": 125000,
            "total_users": 40210,
            "active_tasks": 3,
            "healthy_accounts": 18,
            "available_proxies": 9,
            "today_collected": 5200,
            "system_uptime": "3 days, 4:05:06",
            "last_updated": "2024-01-01T12:00:00Z",
            "tasks": {"total": 40, "by_status": {"running": 3, "completed": 37}},
            "accounts": {"total": 20, "by_status": {"active": 18, "rate_limited": 2}},
            "proxies": {"total": 10, "by_status": {"healthy": 9, "dead": 1}},
            "throughput": {"posts_last_hour": 900, "posts_per_minute": 15.0},
        }
    )
    total_tweets: int
    total_users: int
    active_tasks: int
    healthy_accounts: int
    available_proxies: int
    today_collected: int
    system_uptime: str
    last_updated: datetime
    tasks: dict[str, Any]
    accounts: dict[str, Any]
    proxies: dict[str, Any]
    throughput: dict[str, Any]


class DependencyHealth(BaseModel):
    model_config = ConfigDict(extra="allow")
    status: Literal["ok", "down", "not_ready"]
    detail: str | None = None
    latency_ms: float | None = None


class Health(BaseModel):
    model_config = open_model(
        {
            "status": "healthy",
            "checked_at": "2024-01-01T12:00:00Z",
            "dependencies": {
                "broker": {"status": "ok", "latency_ms": 3.1},
                "clickhouse": {"status": "ok", "latency_ms": 1.2},
                "object_store": {"status": "ok", "latency_ms": 4.0},
            },
            "services": {
                "task-gateway": {"status": "ok"},
                "account-manager": {"status": "ok"},
            },
        }
    )
    status: Literal["healthy", "unhealthy"]
    checked_at: datetime
    dependencies: dict[str, DependencyHealth]
    services: dict[str, DependencyHealth]


OPENAPI_TAGS = [
    {"name": TAG_TASKS, "description": "任务管理: create, list, read, control tasks."},
    {"name": TAG_STATISTICS, "description": "数据统计: unique posts per keyword per month."},
    {"name": TAG_DATA, "description": "数据查询: stored posts and users."},
    {"name": TAG_ADMIN, "description": "系统管理: system statistics and health."},
]
