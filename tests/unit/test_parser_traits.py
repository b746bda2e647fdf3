"""The parser against X traits the shared captures lack, one fixture per trait
(tests/fixtures/x/<trait>.json, derived from real X objects by build_traits.py there).

Expected values are read from the fixture's raw JSON by the test (walking it independently of
the parser), never copied from parser output.
"""

from __future__ import annotations

import html
from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest
from aiokafka.structs import ConsumerRecord

from libs.kafka import Incoming
from libs.parsing import PageParseError, parse_timeline_page, parse_users_page
from libs.parsing.followings import parse_x_following
from libs.records.dead_letter import DeadLetter
from libs.records.pages import RawPage
from libs.records.posts import MediaJob, Post, TaskUser
from services.parser.handler import parse_raw_page

TRAITS = Path(__file__).resolve().parents[1] / "fixtures" / "x"
NOW = datetime(2026, 7, 9, 12, 0, tzinfo=UTC)


def load(name: str) -> dict:
    return orjson.loads((TRAITS / name).read_bytes())


def parse(name: str):
    return parse_timeline_page(
        (TRAITS / name).read_bytes(), task_id="t1", keyword="kw", collected_at=NOW
    )


def entries(doc: dict) -> list[dict]:
    """The tweet results of a SearchTimeline answer, in entry order."""
    ins = doc["data"]["search_by_raw_query"]["search_timeline"]["timeline"]["instructions"]
    return [
        e["content"]["itemContent"]["tweet_results"]["result"]
        for i in ins
        for e in i.get("entries", [])
        if e["entryId"].startswith("tweet-")
    ]


def user_of(t: dict) -> dict:
    return t["core"]["user_results"]["result"]


def handle(u: dict) -> str:
    return (u.get("core") or {}).get("screen_name") or u["legacy"]["screen_name"]


def full_text(t: dict) -> str:
    note = (t.get("note_tweet") or {}).get("note_tweet_results", {}).get("result", {})
    return note.get("text") or html.unescape(t["legacy"]["full_text"])


def x_time(s: str) -> datetime:
    return datetime.strptime(s, "%a %b %d %H:%M:%S %z %Y").astimezone(UTC)


def round_trips(p: Post) -> None:
    assert Post.decode(p.encode(), p.encode_body()) == p


# --------------------------------------------------------------- retweet of a quote post


def test_retweet_of_quote_is_a_retweet_and_keeps_its_originals_quote():
    rt = entries(load("retweet_of_quote.json"))[0]
    orig = rt["legacy"]["retweeted_status_result"]["result"]
    quoted = orig["quoted_status_result"]["result"]
    # the trait: X marks the retweet itself as quoting (its original's quote)
    assert rt["legacy"]["is_quote_status"] is True
    assert rt["legacy"]["quoted_status_id_str"] == quoted["rest_id"]
    assert "quoted_status_result" not in rt

    (p,) = parse("retweet_of_quote.json").posts
    assert p.post_id == rt["rest_id"]
    assert p.is_retweet and p.post_type == "retweet"
    assert p.is_quote is False  # describes the post itself: a retweet, quoting nothing
    assert p.original_post_id == orig["rest_id"]
    assert p.original_author_handle == "@" + handle(user_of(orig))
    # the retweeted post's own quote, in fields a client reads (not only raw_data)
    assert p.original_quote_post_id == quoted["rest_id"]
    assert p.original_quote_author_handle == "@" + handle(user_of(quoted))
    assert p.original_quote_author_name == user_of(quoted)["core"]["name"]
    assert p.original_quote_author_avatar == user_of(quoted)["avatar"]["image_url"]
    assert p.original_quote_post_content == full_text(quoted)
    assert p.original_quote_post_time == x_time(quoted["legacy"]["created_at"])
    round_trips(p)


def test_a_quote_post_itself_is_still_a_quote():
    """The same original, seen as a top-level post: a quote, with its quoted post as original."""
    orig = entries(load("retweet_of_quote.json"))[0]["legacy"]["retweeted_status_result"]["result"]
    doc = load("retweet_of_quote.json")
    entry = doc["data"]["search_by_raw_query"]["search_timeline"]["timeline"]["instructions"][0]
    entry["entries"][0]["content"]["itemContent"]["tweet_results"]["result"] = orig
    (p,) = parse_timeline_page(orjson.dumps(doc), task_id="t", keyword="k", collected_at=NOW).posts
    assert p.is_quote and not p.is_retweet and p.post_type == "quote"
    assert p.original_post_id == orig["quoted_status_result"]["result"]["rest_id"]
    assert p.original_quote_post_id is None


# --------------------------------------------------------------- entities of a retweet


def test_retweet_links_hashtags_and_mentions_come_from_the_full_original_text():
    rt = entries(load("retweet_entities_past_the_cut.json"))[0]
    orig = rt["legacy"]["retweeted_status_result"]["result"]
    oents = orig["legacy"]["entities"]
    # the trait: X cut the retweet's text at 140, and its entities with it
    assert rt["legacy"]["full_text"].endswith("…") and len(rt["legacy"]["full_text"]) == 140
    assert oents["urls"] and oents["hashtags"]
    assert rt["legacy"]["entities"]["urls"] == [] and rt["legacy"]["entities"]["hashtags"] == []

    (p,) = parse("retweet_entities_past_the_cut.json").posts
    assert p.post_content == f"RT @{handle(user_of(orig))}: {full_text(orig)}"
    assert [(lk.url, lk.expanded_url, lk.display_url) for lk in p.post_links] == [
        (u["url"], u["expanded_url"], u["display_url"]) for u in oents["urls"]
    ]
    assert p.hashtags == [h["text"] for h in oents["hashtags"]]
    assert p.mentions == [handle(user_of(orig))] + [
        m["screen_name"] for m in oents.get("user_mentions", [])
    ]
    # every link, hashtag and mention is in the content the record holds
    for lk in p.post_links:
        assert lk.url in p.post_content
    for tag in p.hashtags:
        assert f"#{tag}" in p.post_content
    for name in p.mentions:
        assert f"@{name}" in p.post_content
    round_trips(p)


# --------------------------------------------------------------- counts X does not give


def test_counts_x_does_not_give_for_the_post_itself_are_null():
    rt, own = entries(load("retweet_without_own_view_count.json"))
    orig = rt["legacy"]["retweeted_status_result"]["result"]
    # the trait: the retweet's views carry no count; X's retweet count on it is the original's
    assert rt["views"] == {"state": "Enabled"} and orig["views"]["count"]
    assert rt["legacy"]["retweet_count"] == orig["legacy"]["retweet_count"]
    assert own["views"] == {"state": "Enabled"}

    p_rt, p_own = parse("retweet_without_own_view_count.json").posts
    assert p_rt.view_count is None
    assert p_rt.retweet_count is None
    assert p_rt.original_view_count == int(orig["views"]["count"])
    assert p_rt.original_retweet_count == orig["legacy"]["retweet_count"]
    assert p_rt.original_like_count == orig["legacy"]["favorite_count"]
    assert p_rt.original_comment_count == orig["legacy"]["reply_count"]
    assert p_rt.original_quote_count == orig["legacy"]["quote_count"]
    assert p_rt.original_bookmark_count == orig["legacy"]["bookmark_count"]
    # what X gives for the retweet itself stays the retweet's
    assert p_rt.like_count == rt["legacy"]["favorite_count"] == 0
    assert p_rt.comment_count == rt["legacy"]["reply_count"]

    # a post of its own without a view count: null, never its quoted post's
    quoted = own["quoted_status_result"]["result"]
    assert p_own.is_quote and p_own.view_count is None
    assert p_own.retweet_count == own["legacy"]["retweet_count"]
    assert p_own.original_view_count == int(quoted["views"]["count"])
    round_trips(p_rt)


# --------------------------------------------------------------- video variants


def test_video_keeps_every_variant_x_lists_the_hls_playlist_included():
    (t,) = entries(load("video_with_hls_variant.json"))
    (raw_media,) = t["legacy"]["extended_entities"]["media"]
    variants = raw_media["video_info"]["variants"]
    hls = [v for v in variants if v["content_type"] == "application/x-mpegURL"]
    assert hls and all("bitrate" not in v for v in hls)  # the trait

    page = parse("video_with_hls_variant.json")
    (m,) = page.posts[0].post_images
    assert m.type == "video_cover"
    assert [(v.url, v.content_type, v.bitrate) for v in m.video_variants] == [
        (v["url"], v["content_type"], v.get("bitrate")) for v in variants
    ]
    # the file to download is still the best mp4, never the playlist
    (job,) = [j for j in page.media_jobs if isinstance(j, MediaJob)]
    best = max((v for v in variants if "bitrate" in v), key=lambda v: v["bitrate"])
    assert job.video_url == best["url"]
    round_trips(page.posts[0])


# --------------------------------------------------------------- users laid out otherwise


def test_community_members_page_parses():
    doc = load("community_members_page.json")
    ms = doc["data"]["communityResults"]["result"]["members_slice"]
    raw = [it["result"] for it in ms["items_results"]]
    assert "instructions" not in orjson.dumps(doc).decode()  # the trait: no timeline

    up = parse_users_page((TRAITS / "community_members_page.json").read_bytes(), collected_at=NOW)
    assert [u.user_id for u in up.users] == [u["rest_id"] for u in raw]
    assert [u.user_name for u in up.users] == [handle(u) for u in raw]
    assert up.cursor_bottom == ms["slice_info"]["next_cursor"]
    assert up.skipped == []
    # the KOL following-list reader takes it too, and goes on by its cursor
    kol = parse_x_following((TRAITS / "community_members_page.json").read_bytes(), None, NOW)
    assert len(kol.users) == len(raw) and not kol.final


def _tweets_only_timeline() -> bytes:
    """A timeline answer holding tweets where users were expected (X answering another
    operation's layout): a real SearchTimeline page."""
    return (TRAITS / "retweet_of_quote.json").read_bytes()


@pytest.mark.parametrize(
    "body,cause",
    [
        (
            orjson.dumps(
                {
                    "data": {
                        "communityResults": {"result": {"__typename": "Community", "rest_id": "1"}}
                    }
                }
            ),
            "the result is a Community",
        ),
        (_tweets_only_timeline(), "a timeline of no users, its items are 1 × TimelineTweet"),
        (orjson.dumps({"data": {"viewer": {"settings": {}}}}), "no user timeline"),
    ],
)
def test_a_users_page_laid_out_otherwise_fails_loudly(body, cause):
    with pytest.raises(PageParseError) as ei:
        parse_users_page(body, collected_at=NOW)
    assert cause in str(ei.value)
    # the KOL reader does not take it for the end of the list either
    with pytest.raises(PageParseError):
        parse_x_following(body, "c0", NOW)


def test_end_of_a_user_list_is_still_an_empty_page():
    """A following list's last page (only cursors) is no layout error: 0 users, the end."""
    body = orjson.dumps(
        {
            "data": {
                "user": {
                    "result": {
                        "timeline": {
                            "timeline": {
                                "instructions": [
                                    {
                                        "type": "TimelineAddEntries",
                                        "entries": [
                                            {
                                                "entryId": "cursor-bottom-0",
                                                "content": {
                                                    "__typename": "TimelineTimelineCursor",
                                                    "entryType": "TimelineTimelineCursor",
                                                    "cursorType": "Bottom",
                                                    "value": "c0",
                                                },
                                            }
                                        ],
                                    }
                                ]
                            }
                        }
                    }
                }
            }
        }
    )
    up = parse_users_page(body, collected_at=NOW)
    assert up.users == [] and up.skipped == []
    assert parse_x_following(body, "c0", NOW).final


def _raw_page(response: bytes, operation: str) -> Incoming:
    page = RawPage(
        task_id="t1",
        slice_id="s0",
        page_no=0,
        keyword="retweeters:1790000000000000000",
        operation=operation,
        query="1790000000000000000",
        requested_at=NOW,
        response=response.decode(),
    )
    value, body = page.encode(), page.encode_body()
    headers = [("xget-schema", RawPage.schema_id().encode()), ("xget-body", body)]
    raw = ConsumerRecord(
        "raw-pages", 0, 7, 0, 0, b"t1", value, None, len(b"t1"), len(value), headers
    )
    return Incoming("raw-pages", 0, 7, "t1", page, dict(headers), 0, raw)


def test_parser_dead_letters_a_users_page_it_cannot_read_with_the_cause():
    outs = parse_raw_page(_raw_page(_tweets_only_timeline(), "Retweeters"))
    dead = [o.record for o in outs if isinstance(o.record, DeadLetter)]
    assert len(dead) == 1 and not any(isinstance(o.record, TaskUser) for o in outs)
    assert "unparsable" in dead[0].error and "TimelineTweet" in dead[0].error
    # a members slice answered to a user operation parses into the task's users
    members = (TRAITS / "community_members_page.json").read_bytes()
    users = [o.record for o in parse_raw_page(_raw_page(members, "Retweeters"))]
    assert len(users) == 12 and all(isinstance(u, TaskUser) for u in users)
