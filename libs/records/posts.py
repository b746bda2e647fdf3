"""The client's standard post record, the user record and the media job the parser emits."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

from .base import Record

PostType = Literal["text", "image", "video", "retweet", "quote"]
MediaType = Literal["image", "video_cover", "gif"]


class VideoVariant(BaseModel):
    url: str
    content_type: str | None = None
    bitrate: int | None = None


class PostMedia(BaseModel):
    """One image, GIF thumbnail or video cover of a post."""

    original_url: str = Field(description="URL on X's media host (pbs.twimg.com).")
    oss_url: str | None = Field(
        None, description="Object-store URL once media-downloader stored it."
    )
    type: MediaType
    width: int | None = None
    height: int | None = None
    video_duration_ms: int | None = None
    video_variants: list[VideoVariant] = Field(default_factory=list)


class PostLink(BaseModel):
    url: str = Field(description="The t.co URL as it appears in the text.")
    expanded_url: str | None = None
    display_url: str | None = None


class Post(Record):
    """A post in the client's standard record (see ARCHITECTURE.md, 'The client's post record')."""

    schema_name = "xget.Post"
    schema_version = 2  # v2: raw_data travels as the xget-body header
    read_versions = (1,)
    body_field = "raw_data"
    body_since = 2

    platform: Literal["x"] = Field("x", description="Source platform; Facebook/Instagram later.")
    post_url: str = Field(description="https://x.com/{handle}/status/{id}")
    post_id: str = Field(description="Post id, a string of up to 19 digits.")
    post_type: PostType
    author_id: str | None = None
    author_avatar: str | None = None
    author_name: str | None = None
    author_handle: str = Field(description="'@name'")
    post_time: datetime = Field(description="When the post was created (UTC).")
    post_content: str = Field(description="Full text (note_tweet for long posts, RT text rebuilt).")
    post_images: list[PostMedia] = Field(default_factory=list)
    comment_count: int = 0
    retweet_count: int = 0
    like_count: int = 0
    quote_count: int = 0
    view_count: int | None = Field(None, description="None when X did not report views.")
    bookmark_count: int | None = Field(None, description="None in captures without bookmarks.")
    is_retweet: bool = False
    is_quote: bool = False
    original_post_id: str | None = None
    original_author_avatar: str | None = None
    original_author_name: str | None = None
    original_author_handle: str | None = None
    original_post_time: datetime | None = None
    original_post_content: str | None = None
    original_post_images: list[PostMedia] = Field(default_factory=list)
    post_links: list[PostLink] = Field(default_factory=list)
    hashtags: list[str] = Field(default_factory=list)
    mentions: list[str] = Field(default_factory=list, description="Handles without '@'.")
    lang: str | None = None
    conversation_id: str | None = None
    parent_post_id: str | None = Field(None, description="Root post of the conversation (replies).")
    parent_comment_id: str | None = Field(
        None, description="The post this one directly answers, when that is itself a reply."
    )
    oss_file_path: str | None = Field(None, description="Batch file that reported the post.")
    keyword: str = Field(description="Keyword of the task that collected it.")
    task_id: str
    collected_at: datetime = Field(description="When XGet collected it (UTC); billing month.")
    raw_data: str = Field(description="The post's raw JSON object from X, verbatim.")


class XUser(Record):
    """An X user as seen in a response (authors, quoted authors, followings)."""

    schema_name = "xget.XUser"
    schema_version = 2  # v2: raw_data travels as the xget-body header
    read_versions = (1,)
    body_field = "raw_data"
    body_since = 2

    platform: Literal["x"] = "x"
    user_id: str
    user_name: str = Field(description="screen_name, without '@'.")
    name: str | None = None
    avatar: str | None = None
    description: str | None = None
    created_at: str | None = Field(None, description="X's original created_at text.")
    created_at_time: datetime | None = None
    followers: int = 0
    following: int = 0
    statuses_count: int = 0
    verified: bool = False
    blue_verified: bool = False
    protected: bool = False
    location: str | None = None
    website: str | None = Field(None, description="The profile's URL, expanded when X gives it.")
    banner_url: str | None = None
    seen_at: datetime
    raw_data: str = Field("", description="The user's raw JSON object from X.")


class MediaJob(Record):
    """Download one media URL of a post into object storage."""

    schema_name = "xget.MediaJob"

    task_id: str
    post_id: str
    original_url: str
    type: MediaType
    video_url: str | None = Field(None, description="Best video variant, if the task wants video.")
    of_original: bool = Field(False, description="Belongs to the retweeted/quoted original.")


class TaskUser(XUser):
    """A user a task collected (a profile, or one account that retweeted a post): the user as
    X showed it plus the task it belongs to. Written on the posts topic (keyed by task, in page
    order before the slice's SliceEnd) so the dedup-counter counts it like a post."""

    schema_name = "xget.TaskUser"

    task_id: str
    keyword: str = Field(description="The task's keyword, e.g. 'retweeters:<post id>'.")
    relation: Literal["profile", "retweeter"]
    subject: str = Field(description="The retweeted post's id, or the profile's screen name.")
    rank: int = Field(0, ge=0, description="Position in X's list (0 = first shown).")
    retweeted_at: datetime | None = Field(
        None,
        description="When the user retweeted. X's Retweeters operation does not say "
        "(its entries carry the user only, sortIndex is no time), so this "
        "stays None until X provides it.",
    )
