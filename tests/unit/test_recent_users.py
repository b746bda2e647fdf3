"""The parser publishes a user again only when X says something new about them, or after
the resend interval; every first sighting is published."""

from datetime import datetime, timezone

from libs.records.posts import XUser
from services.parser.recent_users import RecentUsers


class Clock:
    def __init__(self):
        self.t = 1000.0

    def __call__(self):
        return self.t


def user(uid: str, followers: int = 10) -> XUser:
    raw = f'{{"rest_id":"{uid}","legacy":{{"followers_count":{followers}}}}}'
    return XUser(user_id=uid, user_name=f"u{uid}", followers=followers, raw_data=raw,
                 seen_at=datetime.now(timezone.utc))


def test_unchanged_user_is_published_once_per_interval():
    clock = Clock()
    recent = RecentUsers(600, clock=clock)
    assert recent.should_publish(user("1"))
    clock.t += 599
    assert not recent.should_publish(user("1"))
    assert recent.should_publish(user("2"))  # another user: first sighting
    clock.t += 2
    assert recent.should_publish(user("1"))  # the interval passed: seen_at refreshed


def test_a_changed_user_is_published_at_once():
    recent = RecentUsers(600, clock=Clock())
    assert recent.should_publish(user("1", followers=10))
    assert recent.should_publish(user("1", followers=11))
    assert not recent.should_publish(user("1", followers=11))


def test_zero_publishes_every_sighting():
    recent = RecentUsers(0, clock=Clock())
    assert all(recent.should_publish(user("1")) for _ in range(3))


def test_memory_is_bounded_and_forgets_the_oldest():
    recent = RecentUsers(600, max_users=3, clock=Clock())
    for uid in "1234":
        assert recent.should_publish(user(uid))
    assert len(recent._sent) == 3
    assert recent.should_publish(user("1"))  # forgotten: published again (harmless)
    assert not recent.should_publish(user("4"))
