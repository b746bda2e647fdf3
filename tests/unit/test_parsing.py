"""libs.parsing against every real X fixture.

Expected values are read from the raw fixture JSON in the test itself (walking the JSON
independently of the parser), never copied from parser output. Variations (visibility wrapper,
missing quote, null rest_id) are derived in code; the fixture files stay byte-identical.
"""

from __future__ import annotations

import copy
import html
import logging
import os
from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest

from libs.parsing import PageParseError, parse_timeline_page, parse_users_page
from libs.records.posts import Post

FIX = Path(os.environ.get("XGET_FIXTURES", "/work/shared/fixtures")) / "x"
TWEET_FIXTURES = [
    "raw_search.json",
    "raw_tweet_details.json",
    "raw_tweet_replies.json",
    "card_poll.json",
    "card_audiospace.json",
    "manual_tweet_with_video_1.json",
    "_issue_28_1.json",
    "_issue_28_2.json",
]
USER_FIXTURES = [
    "raw_followers.json",
    "raw_following.json",
    "raw_verified_followers.json",
    "raw_retweeters.json",
    "raw_user_by_login.json",
]
NOW = datetime(2026, 7, 9, 12, 0, tzinfo=UTC)

pytestmark = pytest.mark.skipif(not FIX.is_dir(), reason="fixtures not present")


# ----------------------------------------------------------------- independent JSON walkers


def load(name: str) -> dict:
    return orjson.loads((FIX / name).read_bytes())


def parse(doc_or_name, **kw):
    body = (
        (FIX / doc_or_name).read_bytes()
        if isinstance(doc_or_name, str)
        else orjson.dumps(doc_or_name)
    )
    return parse_timeline_page(body, task_id="t1", keyword="kw", collected_at=NOW, **kw)


def walk(o):
    """Every dict in the document, depth-first in document order."""
    stack = [o]
    while stack:
        x = stack.pop()
        if isinstance(x, dict):
            yield x
            stack.extend(reversed(list(x.values())))
        elif isinstance(x, list):
            stack.extend(reversed(x))


def unwrap(r):
    if r.get("__typename") == "TweetWithVisibilityResults":
        return r["tweet"]
    return r


def timeline_tweets(doc) -> list[dict]:
    """Results of TimelineTweet items (entries and module items), in document order, unique."""
    out, seen = [], set()
    for d in walk(doc):
        if d.get("itemType") == "TimelineTweet":
            r = unwrap(d["tweet_results"]["result"])
            if r["rest_id"] not in seen:
                seen.add(r["rest_id"])
                out.append(r)
    return out


def all_tweets(doc) -> dict[str, dict]:
    return {
        d["rest_id"]: d for d in walk(doc) if d.get("__typename") == "Tweet" and d.get("legacy")
    }


def user_of(tweet: dict) -> dict:
    return tweet["core"]["user_results"]["result"]


def screen_name(u: dict) -> str:
    return (u.get("core") or {}).get("screen_name") or u["legacy"]["screen_name"]


def x_time(s: str) -> datetime:
    return datetime.strptime(s, "%a %b %d %H:%M:%S %z %Y").astimezone(UTC)


def by_id(page) -> dict[str, Post]:
    return {p.post_id: p for p in page.posts}


# ----------------------------------------------------------------- every tweet fixture


@pytest.mark.parametrize("name", TWEET_FIXTURES)
def test_top_level_posts_in_entry_order_each_once(name):
    doc = load(name)
    page = parse(name)
    expected = [r["rest_id"] for r in timeline_tweets(doc)]
    assert [p.post_id for p in page.posts] == expected
    assert len({p.post_id for p in page.posts}) == len(page.posts)
    assert page.skipped == []


@pytest.mark.parametrize("name", TWEET_FIXTURES)
def test_post_fields_match_raw(name):
    doc = load(name)
    page = parse(name)
    posts = by_id(page)
    for r in timeline_tweets(doc):
        p = posts[r["rest_id"]]
        leg = r["legacy"]
        u = user_of(r)
        handle = screen_name(u)
        assert isinstance(p.post_id, str) and p.post_id == leg["id_str"]
        assert p.post_url == f"https://x.com/{handle}/status/{r['rest_id']}"
        assert p.author_handle == "@" + handle
        assert p.author_id == u["rest_id"]
        assert p.author_name == ((u.get("core") or {}).get("name") or u["legacy"]["name"])
        avatar = (u.get("avatar") or {}).get("image_url") or u["legacy"].get(
            "profile_image_url_https"
        )
        assert p.author_avatar == avatar
        assert p.post_time == x_time(leg["created_at"])
        assert p.post_time.utcoffset().total_seconds() == 0
        assert p.comment_count == leg["reply_count"]
        assert p.retweet_count == leg["retweet_count"]
        assert p.like_count == leg["favorite_count"]
        assert p.quote_count == leg["quote_count"]
        assert p.bookmark_count == leg.get("bookmark_count")
        if "retweeted_status_result" not in leg:
            views = (r.get("views") or {}).get("count")
            assert p.view_count == (int(views) if views is not None else None)
        assert p.lang == leg["lang"]
        assert p.conversation_id == leg["conversation_id_str"]
        assert orjson.loads(p.raw_data) == r
        assert p.keyword == "kw" and p.task_id == "t1" and p.collected_at == NOW
        assert p.mentions == [
            m["screen_name"]
            for m in (
                (r.get("note_tweet") or {})
                .get("note_tweet_results", {})
                .get("result", {})
                .get("entity_set", {})
                .get("user_mentions")
                or leg["entities"].get("user_mentions", [])
            )
        ]
        assert all(not m.startswith("@") for m in p.mentions)
        assert p.hashtags == [
            h["text"]
            for h in (
                (r.get("note_tweet") or {})
                .get("note_tweet_results", {})
                .get("result", {})
                .get("entity_set", {})
                .get("hashtags")
                or leg["entities"].get("hashtags", [])
            )
        ]
        # parent ids
        reply_to = leg.get("in_reply_to_status_id_str")
        if reply_to:
            assert p.parent_post_id == leg["conversation_id_str"]
            assert p.parent_comment_id == (
                reply_to if reply_to != leg["conversation_id_str"] else None
            )
        else:
            assert p.parent_post_id is None and p.parent_comment_id is None
        # post type
        media_types = {m["type"] for m in leg.get("extended_entities", {}).get("media", [])}
        if "retweeted_status_result" in leg:
            want = "retweet"
        elif leg.get("is_quote_status"):
            want = "quote"
        elif media_types & {"video", "animated_gif"}:
            want = "video"
        elif "photo" in media_types:
            want = "image"
        else:
            want = "text"
        assert p.post_type == want, p.post_id
        # round-trip through the wire format: the JSON value and the xget-body header
        assert Post.decode(p.encode(), p.encode_body()) == p


@pytest.mark.parametrize("name", TWEET_FIXTURES)
def test_users_every_user_object_unique(name):
    doc = load(name)
    page = parse(name)
    expected = {
        d["rest_id"] for d in walk(doc) if d.get("__typename") == "User" and d.get("rest_id")
    }
    got = [u.user_id for u in page.users]
    assert len(got) == len(set(got))
    assert set(got) == expected
    raw_users: dict[str, list[dict]] = {}
    for d in walk(doc):
        if d.get("__typename") == "User" and d.get("rest_id"):
            raw_users.setdefault(d["rest_id"], []).append(d)
    for u in page.users:
        # a user seen several times may carry different counts per snapshot: one must match
        assert any(_user_matches(u, raw) for raw in raw_users[u.user_id]), u.user_id


def _user_matches(u, raw) -> bool:
    try:
        _check_user(u, raw)
        return True
    except AssertionError:
        return False


def _check_user(u, raw):
    leg = raw.get("legacy") or {}
    assert u.user_name == screen_name(raw)
    assert u.followers == (raw.get("relationship_counts") or {}).get(
        "followers", leg.get("followers_count")
    )
    assert u.following == (raw.get("relationship_counts") or {}).get(
        "following", leg.get("friends_count")
    )
    assert u.statuses_count == (raw.get("tweet_counts") or {}).get(
        "tweets", leg.get("statuses_count")
    )
    created = (raw.get("core") or {}).get("created_at") or leg.get("created_at")
    assert u.created_at == created and u.created_at_time == x_time(created)
    assert u.blue_verified == bool(raw.get("is_blue_verified"))
    assert u.seen_at == NOW
    assert orjson.loads(u.raw_data) == raw


@pytest.mark.parametrize("name", TWEET_FIXTURES)
def test_media_and_jobs_match_raw(name):
    doc = load(name)
    page = parse(name)
    posts = by_id(page)
    for r in timeline_tweets(doc):
        p = posts[r["rest_id"]]
        raw_media = r["legacy"].get("extended_entities", {}).get("media", [])
        assert [m.original_url for m in p.post_images] == [m["media_url_https"] for m in raw_media]
        for m, rm in zip(p.post_images, raw_media, strict=False):
            assert (
                m.type
                == {"photo": "image", "video": "video_cover", "animated_gif": "gif"}[rm["type"]]
            )
            assert (m.width, m.height) == (
                rm["original_info"]["width"],
                rm["original_info"]["height"],
            )
            if rm["type"] != "photo":
                vi = rm["video_info"]
                assert m.video_duration_ms == vi.get("duration_millis")
                assert [v.url for v in m.video_variants] == [
                    v["url"] for v in vi["variants"] if "bitrate" in v
                ]
            else:
                assert m.video_variants == [] and m.video_duration_ms is None
    # one job per media URL of each post and of its original
    want = set()
    for p in page.posts:
        for m in p.post_images:
            want.add((p.post_id, m.original_url, False))
        for m in p.original_post_images:
            if (p.post_id, m.original_url, False) not in want:
                want.add((p.post_id, m.original_url, True))
    got = [(j.post_id, j.original_url, j.of_original) for j in page.media_jobs]
    assert len(got) == len(set(got)) and set(got) == want
    for j in page.media_jobs:
        assert j.task_id == "t1"
        if j.type != "image":
            assert j.video_url and j.video_url.startswith("https://")


def test_raw_search_counts_from_readme():
    """raw_search: 20 timeline tweet entries, 25 tweets (5 quoted), 33 photos, 4 videos, 18 variants."""
    doc = load("raw_search.json")
    page = parse("raw_search.json")
    entries = [
        e
        for e in doc["data"]["search_by_raw_query"]["search_timeline"]["timeline"]["instructions"][
            0
        ]["entries"]
        if e["entryId"].startswith("tweet-")
    ]
    assert len(entries) == 20 and page.entries == 20
    assert [p.post_id for p in page.posts] == [e["entryId"].removeprefix("tweet-") for e in entries]
    # count media over top-level posts and the originals they carry, unique by URL
    seen = {}
    for p in page.posts:
        for m in p.post_images + p.original_post_images:
            seen[m.original_url] = m
    raw = {}
    for t in all_tweets(doc).values():
        for m in t["legacy"].get("extended_entities", {}).get("media", []):
            raw[m["media_url_https"]] = m
    assert set(seen) <= set(raw)
    raw_photos = sum(1 for m in raw.values() if m["type"] == "photo")
    raw_videos = [m for m in raw.values() if m["type"] == "video"]
    raw_variants = sum(1 for m in raw_videos for v in m["video_info"]["variants"] if "bitrate" in v)
    photos = [m for m in seen.values() if m.type == "image"]
    videos = [m for m in seen.values() if m.type == "video_cover"]
    assert len(photos) == raw_photos == 33
    assert len(videos) == len(raw_videos) == 4
    assert sum(len(v.video_variants) for v in videos) == raw_variants == 18
    assert all(v.video_duration_ms and v.video_duration_ms > 0 for v in videos)


def test_note_tweet_full_text_and_links():
    doc = load("raw_search.json")
    posts = by_id(parse("raw_search.json"))
    notes = [r for r in timeline_tweets(doc) if r.get("note_tweet")]
    assert notes
    for r in notes:
        note = r["note_tweet"]["note_tweet_results"]["result"]
        p = posts[r["rest_id"]]
        assert p.post_content == note["text"]
        assert [lk.url for lk in p.post_links] == [
            u["url"] for u in note["entity_set"].get("urls", [])
        ]
        assert [lk.expanded_url for lk in p.post_links] == [
            u["expanded_url"] for u in note["entity_set"].get("urls", [])
        ]
    longest = max(notes, key=lambda r: len(r["note_tweet"]["note_tweet_results"]["result"]["text"]))
    assert len(posts[longest["rest_id"]].post_content) > 280
    # a short post's links come from legacy.entities.urls
    for r in timeline_tweets(doc):
        if not r.get("note_tweet"):
            assert [lk.url for lk in posts[r["rest_id"]].post_links] == [
                u["url"] for u in r["legacy"]["entities"].get("urls", [])
            ]


def test_quotes_nested_and_standalone():
    doc = load("raw_search.json")
    page = parse("raw_search.json")
    posts = by_id(page)
    quotes = [r for r in timeline_tweets(doc) if r.get("quoted_status_result")]
    assert len(quotes) == 5
    top_ids = set(posts)
    for r in quotes:
        q = unwrap(r["quoted_status_result"]["result"])
        p = posts[r["rest_id"]]
        assert p.is_quote and not p.is_retweet and p.post_type == "quote"
        assert p.original_post_id == q["rest_id"] == r["legacy"]["quoted_status_id_str"]
        assert p.original_author_handle == "@" + screen_name(user_of(q))
        assert p.original_author_name == user_of(q)["core"]["name"]
        assert p.original_author_avatar == user_of(q)["avatar"]["image_url"]
        assert p.original_post_time == x_time(q["legacy"]["created_at"])
        qtext = (q.get("note_tweet") or {}).get("note_tweet_results", {}).get("result", {}).get(
            "text"
        ) or html.unescape(q["legacy"]["full_text"])
        assert p.original_post_content == qtext
        assert [m.original_url for m in p.original_post_images] == [
            m["media_url_https"] for m in q["legacy"].get("extended_entities", {}).get("media", [])
        ]
        # nested-only originals are not top-level posts
        assert q["rest_id"] not in top_ids
        for j in page.media_jobs:
            if j.post_id == p.post_id and j.of_original:
                assert j.original_url in {m.original_url for m in p.original_post_images}


def test_quote_whose_original_is_missing():
    """A nested quote in raw_search carries quoted_status_id_str without the original."""
    doc = load("raw_search.json")
    missing = [
        t
        for t in all_tweets(doc).values()
        if t["legacy"].get("is_quote_status") and not t.get("quoted_status_result")
    ]
    assert missing
    target = missing[0]
    # make it a top-level post of a derived page: replace the first entry's result with it
    page_doc = copy.deepcopy(doc)
    entry = page_doc["data"]["search_by_raw_query"]["search_timeline"]["timeline"]["instructions"][
        0
    ]["entries"][0]
    entry["content"]["itemContent"]["tweet_results"]["result"] = target
    p = parse(page_doc).posts[0]
    assert p.post_id == target["rest_id"]
    assert p.is_quote and p.post_type == "quote"
    assert p.original_post_id == target["legacy"]["quoted_status_id_str"]
    assert p.original_post_content is None and p.original_author_handle is None


@pytest.mark.parametrize("name", ["_issue_28_1.json", "card_audiospace.json"])
def test_retweet_full_text(name):
    doc = load(name)
    posts = by_id(parse(name))
    rts = [r for r in timeline_tweets(doc) if "retweeted_status_result" in r["legacy"]]
    assert rts
    for r in rts:
        orig = unwrap(r["legacy"]["retweeted_status_result"]["result"])
        p = posts[r["rest_id"]]
        assert r["legacy"]["full_text"].endswith("…")  # the trait being tested
        assert p.is_retweet and p.post_type == "retweet"
        assert not p.post_content.endswith("…")
        otext = html.unescape(orig["legacy"]["full_text"])
        assert p.post_content == f"RT @{screen_name(user_of(orig))}: {otext}"
        assert p.original_post_id == orig["rest_id"]
        assert p.original_post_content == otext
        assert p.original_author_handle == "@" + screen_name(user_of(orig))
        assert p.original_post_time == x_time(orig["legacy"]["created_at"])
        assert orig["rest_id"] not in posts


def test_issue_28_1_retweet_of_a_quote_and_quote():
    doc = load("_issue_28_1.json")
    page = parse("_issue_28_1.json")
    tts = timeline_tweets(doc)
    assert [p.post_id for p in page.posts] == [r["rest_id"] for r in tts]
    kinds = {p.post_id: p.post_type for p in page.posts}
    for r in tts:
        if "retweeted_status_result" in r["legacy"]:
            assert kinds[r["rest_id"]] == "retweet"
        elif r["legacy"].get("is_quote_status"):
            assert kinds[r["rest_id"]] == "quote"


def test_issue_28_2_quotes():
    doc = load("_issue_28_2.json")
    posts = by_id(parse("_issue_28_2.json"))
    for r in timeline_tweets(doc):
        p = posts[r["rest_id"]]
        assert p.is_quote == bool(r["legacy"].get("is_quote_status"))
        if p.is_quote:
            assert p.original_post_id == r["legacy"]["quoted_status_id_str"]
            q = r.get("quoted_status_result", {}).get("result")
            if q:
                assert p.original_author_handle == "@" + screen_name(user_of(unwrap(q)))


def test_replies_parent_ids_tweet_details():
    doc = load("raw_tweet_details.json")
    posts = by_id(parse("raw_tweet_details.json"))
    replies = [r for r in timeline_tweets(doc) if r["legacy"].get("in_reply_to_status_id_str")]
    assert len(replies) == 36
    nested = [
        r
        for r in replies
        if r["legacy"]["in_reply_to_status_id_str"] != r["legacy"]["conversation_id_str"]
    ]
    for r in replies:
        p = posts[r["rest_id"]]
        assert p.parent_post_id == r["legacy"]["conversation_id_str"]
    for r in nested:
        assert posts[r["rest_id"]].parent_comment_id == r["legacy"]["in_reply_to_status_id_str"]


def test_video_fixture_variants():
    doc = load("manual_tweet_with_video_1.json")
    posts = by_id(parse("manual_tweet_with_video_1.json"))
    n = 0
    for r in timeline_tweets(doc):
        for rm, m in zip(
            r["legacy"].get("extended_entities", {}).get("media", []),
            posts[r["rest_id"]].post_images,
            strict=False,
        ):
            if rm["type"] == "video":
                n += 1
                assert m.type == "video_cover" and m.original_url == rm["media_url_https"]
                assert len(m.video_variants) == sum(
                    1 for v in rm["video_info"]["variants"] if "bitrate" in v
                )
                assert {v.bitrate for v in m.video_variants} == {
                    v["bitrate"] for v in rm["video_info"]["variants"] if "bitrate" in v
                }
    assert n >= 1


def test_visibility_wrapper_unwrapped():
    doc = load("raw_search.json")
    plain = parse("raw_search.json").posts[1]
    d = copy.deepcopy(doc)
    item = d["data"]["search_by_raw_query"]["search_timeline"]["timeline"]["instructions"][0][
        "entries"
    ][1]
    res = item["content"]["itemContent"]["tweet_results"]
    res["result"] = {
        "__typename": "TweetWithVisibilityResults",
        "tweet": res["result"],
        "tweetInterstitial": {"__typename": "ContextualTweetInterstitial"},
    }
    wrapped = parse(d).posts[1]
    assert wrapped == plain  # raw_data is the inner tweet


def test_gif_mapping_derived():
    doc = load("manual_tweet_with_video_1.json")
    d = copy.deepcopy(doc)
    for t in walk(d):
        for m in (
            (t.get("legacy") or {}).get("extended_entities", {}).get("media", [])
            if isinstance(t.get("legacy"), dict)
            else []
        ):
            if m["type"] == "video":
                m["type"] = "animated_gif"
    page = parse(d)
    gifs = [m for p in page.posts for m in p.post_images if m.type == "gif"]
    assert gifs and not any(m.type == "video_cover" for p in page.posts for m in p.post_images)
    assert all(
        p.post_type == "video" for p in page.posts if any(m.type == "gif" for m in p.post_images)
    )


def test_absent_views_and_bookmarks_are_none():
    doc = load("raw_search.json")
    d = copy.deepcopy(doc)
    r = d["data"]["search_by_raw_query"]["search_timeline"]["timeline"]["instructions"][0][
        "entries"
    ][0]["content"]["itemContent"]["tweet_results"]["result"]
    r.pop("views", None)
    r["legacy"].pop("bookmark_count", None)
    p = parse(d).posts[0]
    assert p.view_count is None and p.bookmark_count is None


def test_ids_are_strings_never_floats():
    body = (FIX / "raw_search.json").read_bytes()
    page = parse("raw_search.json")
    for p in page.posts:
        for v in (p.post_id, p.author_id, p.conversation_id, p.original_post_id):
            assert v is None or (isinstance(v, str) and v.isdigit() and len(v) <= 19)
        assert p.post_id.encode() in body
    for j in page.media_jobs:
        assert isinstance(j.post_id, str)


def test_null_rest_id_author_skipped_with_log(caplog):
    doc = load("raw_search.json")
    d = copy.deepcopy(doc)
    r = d["data"]["search_by_raw_query"]["search_timeline"]["timeline"]["instructions"][0][
        "entries"
    ][2]["content"]["itemContent"]["tweet_results"]["result"]
    user_of(r)["rest_id"] = None
    with caplog.at_level(logging.WARNING, logger="xget.parsing"):
        page = parse(d)
    assert any("null rest_id" in s for s in page.skipped)
    assert any("null rest_id" in rec.getMessage() for rec in caplog.records)
    assert None not in {u.user_id for u in page.users}
    # the post is kept (its handle is known), without an author id
    p = by_id(page)[r["rest_id"]]
    assert p.author_id is None and p.author_handle == "@" + screen_name(user_of(r))
    assert len(page.posts) == 20


def test_author_without_any_user_skips_post_not_page():
    doc = load("raw_search.json")
    d = copy.deepcopy(doc)
    r = d["data"]["search_by_raw_query"]["search_timeline"]["timeline"]["instructions"][0][
        "entries"
    ][3]["content"]["itemContent"]["tweet_results"]["result"]
    r["core"]["user_results"]["result"] = {"__typename": "User", "rest_id": None}
    page = parse(d)
    assert r["rest_id"] not in by_id(page)
    assert len(page.posts) == 19 and len(page.skipped) == 2


def test_tombstone_entry_skipped():
    doc = load("raw_search.json")
    d = copy.deepcopy(doc)
    e = d["data"]["search_by_raw_query"]["search_timeline"]["timeline"]["instructions"][0][
        "entries"
    ][0]
    e["content"]["itemContent"]["tweet_results"]["result"] = {"__typename": "TweetTombstone"}
    page = parse(d)
    assert len(page.posts) == 19 and "TweetTombstone" in page.skipped[0]


def test_bottom_cursor():
    doc = load("raw_search.json")
    page = parse("raw_search.json")
    want = [d["value"] for d in walk(doc) if d.get("cursorType") == "Bottom"]
    assert page.cursor_bottom == want[-1]


# ----------------------------------------------------------------- errors


@pytest.mark.parametrize(
    "body,msg",
    [
        (b'{"data": {"search_by_raw', "malformed JSON"),
        (b"", "malformed JSON"),
        (b'{"errors":[{"message":"Rate limit exceeded","code":88}]}', "Rate limit exceeded"),
        (b'{"errors":[{"message":"Could not authenticate you","code":32}],"data":null}', "code 32"),
        (b"[1,2,3]", "unexpected shape"),
        (b'{"data":{"user":{"result":{"__typename":"User"}}}}', "no timeline instructions"),
        (b'{"foo":1}', "no 'data'"),
    ],
)
def test_page_errors(body, msg):
    with pytest.raises(PageParseError) as ei:
        parse_timeline_page(body, task_id="t", keyword="k", collected_at=NOW)
    assert msg in str(ei.value)


def test_str_body_accepted():
    body = (FIX / "card_poll.json").read_text()
    assert parse_timeline_page(body, task_id="t", keyword="k", collected_at=NOW).posts


def test_empty_timeline_page():
    body = orjson.dumps(
        {
            "data": {
                "search_by_raw_query": {
                    "search_timeline": {
                        "timeline": {
                            "instructions": [{"type": "TimelineAddEntries", "entries": []}]
                        }
                    }
                }
            }
        }
    )
    page = parse_timeline_page(body, task_id="t", keyword="k", collected_at=NOW)
    assert page.posts == [] and page.users == [] and page.cursor_bottom is None


# ----------------------------------------------------------------- user pages


@pytest.mark.parametrize("name", USER_FIXTURES)
def test_users_page(name):
    doc = load(name)
    up = parse_users_page((FIX / name).read_bytes(), collected_at=NOW)
    items = [d["user_results"]["result"] for d in walk(doc) if d.get("itemType") == "TimelineUser"]
    if not items:  # UserByScreenName
        items = [doc["data"]["user"]["result"]]
    good = [u for u in items if u.get("rest_id") and u.get("__typename") == "User"]
    bad = [u for u in items if not u.get("rest_id")]
    assert [u.user_id for u in up.users] == list(dict.fromkeys(u["rest_id"] for u in good))
    assert len(up.skipped) == len(bad)
    raw = {u["rest_id"]: u for u in good}
    for u in up.users:
        r = raw[u.user_id]
        assert u.user_name == screen_name(r)
        assert u.avatar == r["avatar"]["image_url"]
        assert (
            u.followers == r["relationship_counts"]["followers"]
            if "relationship_counts" in r
            else u.followers == r["legacy"]["followers_count"]
        )
        assert orjson.loads(u.raw_data) == r


def test_retweeters_unavailable_user_skipped(caplog):
    doc = load("raw_retweeters.json")
    unavailable = [d for d in walk(doc) if d.get("__typename") == "UserUnavailable"]
    assert unavailable and unavailable[0].get("rest_id") is None
    with caplog.at_level(logging.WARNING, logger="xget.parsing"):
        up = parse_users_page((FIX / "raw_retweeters.json").read_bytes(), collected_at=NOW)
    assert len(up.users) == 19 and len(up.skipped) == 1 and "null rest_id" in up.skipped[0]
    assert caplog.records


def test_2026_layout_legacy_null_derived():
    """Since 2026-05 X may serve Tweet objects with legacy=null and the fields at top level."""
    doc = load("raw_search.json")
    want = parse("raw_search.json").posts
    d = copy.deepcopy(doc)
    for t in walk(d):
        if t.get("__typename") == "Tweet" and isinstance(t.get("legacy"), dict):
            leg = t.pop("legacy")
            for k, v in leg.items():
                t.setdefault(k, v)
            t["legacy"] = None
    got = parse(d).posts
    assert [p.post_id for p in got] == [p.post_id for p in want]
    for a, b in zip(got, want, strict=False):
        assert a.model_dump(exclude={"raw_data"}) == b.model_dump(exclude={"raw_data"})
