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


# The headers in the OpenAPI document of every paged route (its 200 answer).
PAGE_HEADERS_DOC: dict[str, Any] = {
    TOTAL_HEADER: {
        "description": "The exact number of matches (all pages).",
        "schema": {"type": "integer", "minimum": 0},
    },
    LINK_HEADER: {
        "description": "RFC 8288: the next and previous pages, e.g. `<https://host/api/v1/tasks"
        '?limit=50&offset=100>; rel="next", <https://host/api/v1/tasks?limit=50&offset=0>; '
        'rel="prev"`. Absent when there is neither.',
        "schema": {"type": "string"},
    },
}


def paged_responses(description: str, example: list) -> dict[int | str, dict[str, Any]]:
    """The 200 entry of `responses=` for a paged route (merge with the error entries): the
    headers, and an example of the list itself."""
    return {
        200: {
            "description": description,
            "headers": PAGE_HEADERS_DOC,
            "content": {"application/json": {"example": example}},
        }
    }
