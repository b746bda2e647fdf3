"""UserByScreenName, Following/Followers/Retweeters paging, TweetDetail."""

from __future__ import annotations

import orjson
import pytest
from twscrape.models import parse_tweets, parse_user, parse_users

from libs.xclient import get_cursor, gql_entries


def gql(admin, op: str, variables: dict, token: str = "ops"):
    r = admin.get(
        f"/i/api/graphql/someId/{op}",
        params={"variables": orjson.dumps(variables).decode()},
        headers={"cookie": f"auth_token={token}; ct0=c"},
    )
    assert r.status_code == 200, r.text
    assert "x-rate-limit-remaining" in r.headers
    return r


def test_user_by_screen_name(admin):
    a = gql(admin, "UserByScreenName", {"screen_name": "alice"})
    b = gql(admin, "UserByScreenName", {"screen_name": "bob"})
    ua, ub = parse_user(a), parse_user(b)
    assert ua.username == "alice" and ub.username == "bob"
    assert (
        ua.id != ub.id
        and ua.id == parse_user(gql(admin, "UserByScreenName", {"screen_name": "alice"})).id
    )


@pytest.mark.parametrize(
    "op, key", [("Following", "userId"), ("Followers", "userId"), ("Retweeters", "tweetId")]
)
def test_user_lists_page_to_the_configured_total(admin, op, key):
    seen: list[int] = []
    cursor = None
    for _ in range(30):
        v = {key: "44196397", "count": 20, **({"cursor": cursor} if cursor else {})}
        obj = gql(admin, op, v).json()
        ents = gql_entries(obj)
        users = list(parse_users(obj))
        assert len(users) == len(ents)
        nxt = get_cursor(obj)
        if not ents:
            assert nxt == cursor  # end like X: empty page, repeated cursor
            break
        seen += [u.id for u in users]
        cursor = nxt
    assert len(seen) == 150 and len(set(seen)) == 150
    other = {u.id for u in parse_users(gql(admin, op, {key: "12", "count": 20}).json())}
    assert not other & set(seen)


def test_tweet_detail_focal_patched(admin):
    orig = gql(admin, "TweetDetail", {"focalTweetId": "1649191520250245121"}).json()
    got = gql(admin, "TweetDetail", {"focalTweetId": "2000000000000000001"}).json()
    assert len(list(parse_tweets(orig))) == len(list(parse_tweets(got))) > 10
    assert 2000000000000000001 in {t.id for t in parse_tweets(got)}
