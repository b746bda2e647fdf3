"""Paged list answers as the client's design declares them (`response_model=List[...]`): the
body is the bare JSON list of the page; the exact total of matches is the `X-Total-Count`
header and the neighbouring pages are an RFC 8288 `Link` header (rel="next", rel="prev"),
each the request's own URL with `offset` moved (every other parameter kept).

The console is served from the gateway's own origin and the gateway has no CORS middleware;
a cross-origin deployment that adds one must list both headers in `expose_headers`.
"""

from __future__ import annotations

from typing import Any

from fastapi import Request
from starlette.datastructures import URL

TOTAL_HEADER = "X-Total-Count"
# Post searches: whether X-Total-Count is exact or a lower bound (data_routes, post_query).
EXACT_HEADER = "X-Total-Count-Exact"
LINK_HEADER = "Link"


async def request_url(request: Request) -> URL:
    """The request's URL, as a dependency: an endpoint that takes the Request itself is taken
    for one that reads a raw body (libs.strict_params), and would accept unknown body fields."""
    return request.url


def page_headers(url: URL, total: int, limit: int, offset: int, max_offset: int) -> dict[str, str]:
    """X-Total-Count, and Link when there is a next or a previous page. A next page whose
    offset the route would refuse (beyond `max_offset`) is not linked."""
    links = []
    if offset + limit < total and offset + limit <= max_offset:
        links.append((offset + limit, "next"))
    if offset > 0:
        links.append((max(0, offset - limit), "prev"))
    headers = {TOTAL_HEADER: str(total)}
    if links:
        headers[LINK_HEADER] = ", ".join(
            f'<{url.include_query_params(limit=limit, offset=o)}>; rel="{rel}"' for o, rel in links
        )
    return headers


def search_headers(
    url: URL, total: int, exact: bool, on_page: int, limit: int, offset: int, max_offset: int
) -> dict[str, str]:
    """page_headers for a post search whose total may be a lower bound (`exact` false): a
    full page then links the next one even where the bound ends, and X-Total-Count-Exact
    says which it is."""
    more = not exact and on_page == limit
    headers = page_headers(
        url, max(total, offset + limit + 1) if more else total, limit, offset, max_offset
    )
    headers[TOTAL_HEADER] = str(total)
    headers[EXACT_HEADER] = "true" if exact else "false"
    return headers


# The headers in the OpenAPI document of every paged route (its 200 answer).
PAGE_HEADERS_DOC: dict[str, Any] = {
    TOTAL_HEADER: {
        "description": "The number of matches (all pages): exact, but for a post search "
        "whose X-Total-Count-Exact is false (a lower bound).",
        "schema": {"type": "integer", "minimum": 0},
    },
    LINK_HEADER: {
        "description": "RFC 8288: the next and previous pages, e.g. `<https://host/api/v1/tasks"
        '?limit=50&offset=100>; rel="next", <https://host/api/v1/tasks?limit=50&offset=0>; '
        'rel="prev"`. Absent when there is neither.',
        "schema": {"type": "string"},
    },
}


EXACT_HEADER_DOC: dict[str, Any] = {
    "description": "`true` when X-Total-Count is the exact number of matches; `false` when "
    "more than XGET_API_EXACT_TOTAL_LIMIT stored rows match and it is a lower bound "
    "(`exact_total=true` counts exactly).",
    "schema": {"type": "string", "enum": ["true", "false"]},
}


def paged_responses(
    description: str, example: list, *, exactness: bool = False
) -> dict[int | str, dict[str, Any]]:
    """The 200 entry of `responses=` for a paged route (merge with the error entries): the
    headers (with X-Total-Count-Exact for a post search), and an example of the list."""
    headers = {**PAGE_HEADERS_DOC, **({EXACT_HEADER: EXACT_HEADER_DOC} if exactness else {})}
    return {
        200: {
            "description": description,
            "headers": headers,
            "content": {"application/json": {"example": example}},
        }
    }
