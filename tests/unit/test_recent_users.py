"""The parser publishes a user again only when X says something new about them, or after
the resend interval; every first sighting is published."""

from datetime import UTC, datetime
from pathlib import Path

from libs.records.posts import XUser
from services.parser.recent_users import RecentUsers

FIXTURES = Path(__file__).resolve().parents[2].parent / "shared" / "fixtures" / "x"


class Clock:
    def __init__(self):
        self.t = 1000.0

    def __call__(self):
        return self.t


def user(uid: str, followers: int = 10) -> XUser:
    raw = f'{{"rest_id":"{uid}","legacy":{{"followers_count":{followers}}}}}'
    return XUser(
        user_id=uid,
        user_name=f"u{uid}",
        followers=followers,
        raw_data=raw,
        seen_at=datetime.now(UTC),
    )


def key(u: XUser) -> tuple[str, str]:
    """What RecentUsers is asked with: the user's id and raw JSON."""
    return u.user_id, u.raw_data


def test_unchanged_user_is_published_once_per_interval():
    clock = Clock()
    recent = RecentUsers(600, clock=clock)
    assert recent.should_publish(*key(user("1")))
    clock.t += 599
    assert not recent.should_publish(*key(user("1")))
    assert recent.should_publish(*key(user("2")))  # another user: first sighting
    clock.t += 2
    assert recent.should_publish(*key(user("1")))  # the interval passed: seen_at refreshed


def test_a_changed_user_is_published_at_once():
    recent = RecentUsers(600, clock=Clock())
    assert recent.should_publish(*key(user("1", followers=10)))
    assert recent.should_publish(*key(user("1", followers=11)))
    assert not recent.should_publish(*key(user("1", followers=11)))


def test_zero_publishes_every_sighting():
    recent = RecentUsers(0, clock=Clock())
    assert all(recent.should_publish(*key(user("1"))) for _ in range(3))


def test_memory_is_bounded_and_forgets_the_oldest():
    recent = RecentUsers(600, max_users=3, clock=Clock())
    for uid in "1234":
        assert recent.should_publish(*key(user(uid)))
    assert len(recent._sent) == 3
    assert recent.should_publish(*key(user("1")))  # forgotten: published again (harmless)
    assert not recent.should_publish(*key(user("4")))


def test_parser_publishes_a_pages_users_once_then_only_changed_ones():
    """Through the parser's page handler: the same page twice sends its users once; a user
    whose profile changed in between is sent again, with the new data."""
    import orjson

    from libs.kafka import Incoming
    from libs.records.pages import RawPage
    from services.parser.handler import parse_raw_page

    body = (FIXTURES / "raw_search.json").read_text()

    def users_sent(text: str, recent: RecentUsers) -> list[XUser]:
        page = RawPage(
            task_id="t",
            slice_id="s0",
            page_no=0,
            keyword="k",
            operation="SearchTimeline",
            query="k",
            requested_at=datetime.now(UTC),
            response=text,
        )
        return [
            o.record
            for o in parse_raw_page(Incoming("raw-pages", 0, 0, "t", page), recent)
            if type(o.record) is XUser
        ]

    recent = RecentUsers(600, clock=Clock())
    first = users_sent(body, recent)
    assert first and len({u.user_id for u in first}) == len(first)
    assert users_sent(body, recent) == []
    changed = first[0]
    doc = orjson.loads(body)
    bumped = []

    def bump(node):  # the changed user's follower count, wherever the page carries that user
        if isinstance(node, dict):
            if node.get("rest_id") == changed.user_id and "relationship_counts" in node:
                node["relationship_counts"]["followers"] = changed.followers + 1
                bumped.append(node)
            for v in node.values():
                bump(v)
        elif isinstance(node, list):
            for v in node:
                bump(v)

    bump(doc)
    assert bumped
    again = users_sent(orjson.dumps(doc).decode(), recent)
    assert [(u.user_id, u.followers) for u in again] == [(changed.user_id, changed.followers + 1)]
