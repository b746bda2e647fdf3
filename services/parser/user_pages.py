"""Pages of user operations (a post's Retweeters, a UserByScreenName profile) → TaskUser records.

The users go on the posts topic, keyed by task like posts, so they stay in page order ahead
of their slice's SliceEnd and the dedup-counter counts them exactly as it counts posts.
"""

from __future__ import annotations

from libs.kafka import Outgoing
from libs.parsing import parse_users_page
from libs.records.pages import RawPage
from libs.records.posts import TaskUser
from libs.records.tasks import USER_OPERATIONS
from libs.topics import POSTS, POSTS_TARGET_HEADER

RELATION = {"Retweeters": "retweeter", "UserByScreenName": "profile"}
# Ranks leave room for a page's users: page n's users rank from n × RANK_STRIDE.
RANK_STRIDE = 10_000


def is_user_page(page: RawPage) -> bool:
    return page.operation in USER_OPERATIONS


def task_users(page: RawPage) -> list[TaskUser]:
    """The users of one ok page (raises PageParseError when X's answer has no users' shape)."""
    parsed = parse_users_page(page.response or "", collected_at=page.requested_at)
    users = parsed.users
    if page.operation == "UserByScreenName":
        # X answers the one user asked for; a page that shows another is not this task's.
        users = [u for u in users if u.user_name.lower() == page.query.lower()][:1]
    return [
        TaskUser(
            **u.model_dump(),
            task_id=page.task_id,
            keyword=page.keyword,
            relation=RELATION[page.operation],
            subject=page.query,
            rank=page.page_no * RANK_STRIDE + i,
        )
        for i, u in enumerate(users)
    ]


def user_outgoing(page: RawPage, users: list[TaskUser]) -> list[Outgoing]:
    hdr = ((POSTS_TARGET_HEADER, str(page.required_count).encode()),)
    return [Outgoing(POSTS, page.task_id, u, hdr) for u in users]
