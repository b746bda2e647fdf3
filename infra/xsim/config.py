"""Runtime-changeable simulator configuration (POST /_sim/config)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

DEFAULT_LIMITS = {
    "SearchTimeline": 50,
    "Followers": 50,
    "Following": 500,
    "TweetDetail": 150,
    "UserByScreenName": 95,
    "Retweeters": 500,
}


@dataclass
class SimConfig:
    seed: int = 0
    window_seconds: int = 900
    default_density: float = 60.0  # posts per hour per keyword
    densities: dict[str, float] = field(default_factory=dict)  # keyword -> posts per hour
    limits: dict[str, int] = field(default_factory=lambda: dict(DEFAULT_LIMITS))
    default_limit: int = 500  # operations not in `limits`
    max_posts: int = 2000  # cap for queries without since:
    users_per_list: int = 150  # Following/Followers/Retweeters total per target
    users_per_target: dict[str, int] = field(default_factory=dict)
    media_pad_kb: int = 0  # grow each JPEG/MP4 by this much (realistic sizes for benchmarks)
    # > 0: every Following list (GraphQL and the REST API) is drawn from one population of this
    # many users, so KOLs share followed users; 0: each target follows its own users.
    following_pool: int = 0
    api_user_style: str = "v1"  # REST API user objects: v1 (snake_case) or profile (camelCase)

    def density(self, keyword: str) -> float:
        return self.densities.get(keyword, self.default_density)

    def limit(self, operation: str) -> int:
        return self.limits.get(operation, self.default_limit)

    def list_total(self, target: str) -> int:
        return self.users_per_target.get(target, self.users_per_list)

    def to_dict(self) -> dict:
        return asdict(self)

    def update(self, patch: dict) -> None:
        for key, value in patch.items():
            if not hasattr(self, key):
                raise KeyError(key)
            cur = getattr(self, key)
            if isinstance(cur, dict) and isinstance(value, dict):
                cur.update(value)  # merge maps; send null values to drop keys
                for k in [k for k, v in cur.items() if v is None]:
                    del cur[k]
            elif key in (
                "window_seconds",
                "max_posts",
                "users_per_list",
                "seed",
                "default_limit",
                "media_pad_kb",
                "following_pool",
            ):
                setattr(self, key, int(value))
            elif key == "api_user_style":
                if value not in ("v1", "profile"):
                    raise ValueError("api_user_style is v1 or profile")
                setattr(self, key, value)
            elif key == "default_density":
                setattr(self, key, float(value))
            else:
                setattr(self, key, value)
