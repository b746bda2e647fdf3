"""The design's UserResponse fields X gives (protected, location, website, banner) are kept from
both of X's user layouts: the legacy object and the newer top-level location / website /
privacy / banner objects."""

from __future__ import annotations

from tests.unit.test_parsing import parse


def _user(name: str, user_id: str):
    return next(u for u in parse(name).users if u.user_id == user_id)


def test_newer_layout_profile_fields():
    u = _user("raw_tweet_details.json", "2244994945")
    assert (u.protected, u.location, u.website, u.banner_url) == (
        False,
        "127.0.0.1",
        "https://docs.x.com/",  # expanded from X's t.co link
        "https://pbs.twimg.com/profile_banners/2244994945/1690213128",
    )


def test_legacy_layout_profile_fields_expand_the_website():
    page = parse("card_poll.json")
    u = next(u for u in page.users if u.location == "Earth")
    assert u.website == "https://www.cremieux.xyz/subscribe"  # entities.url, expanded
    assert u.banner_url == "https://pbs.twimg.com/profile_banners/1637507099558027267/1679247968"
    assert u.protected is False
