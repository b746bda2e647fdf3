"""Parsing of raw X responses into the standard records (see libs/parsing/x.py)."""

from .x import (
    PageParseError,
    ParsedPage,
    ParsedUsersPage,
    parse_timeline_page,
    parse_users_page,
    parse_x_time,
)

__all__ = [
    "PageParseError",
    "ParsedPage",
    "ParsedUsersPage",
    "parse_timeline_page",
    "parse_users_page",
    "parse_x_time",
]
