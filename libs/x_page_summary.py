"""What the scraper needs from a SearchTimeline page, without building the whole document.

To ask for the next page the scraper needs three things from X's answer: its errors, how many
content entries it has and its Bottom cursor. `orjson.loads` builds every dict and string of
a ~185 KB page (about 1.6 ms) only for those to be read and dropped; the parser builds them
again anyway. msgspec decodes against a skeleton of typed structs and skips every field the
skeleton does not name without creating Python objects for it: the same answers in about a
tenth of the time. It still reads the whole text, so malformed JSON is still refused.

`summarize` returns None whenever the page is not a plain SearchTimeline page the skeleton
fully explains (another operation, no instructions, a cursor not in the instructions, or a
type the skeleton does not expect); the caller then takes twscrape's generic path, so the
answers never differ from twscrape's.
"""

from __future__ import annotations

from dataclasses import dataclass

import msgspec

SKIP_ENTRY_PREFIXES = ("cursor-", "messageprompt-", "module-", "who-to-follow-")


class _Content(msgspec.Struct):
    cursorType: str | None = None
    value: object = None


class _Entry(msgspec.Struct):
    entryId: object = msgspec.UNSET
    content: _Content | None = None


class _Instruction(msgspec.Struct):
    entries: list[_Entry] | None = None
    entry: _Entry | None = None


class _Timeline(msgspec.Struct):
    instructions: list[_Instruction] | None = None


class _SearchTimeline(msgspec.Struct):
    timeline: _Timeline | None = None


class _SearchByRawQuery(msgspec.Struct):
    search_timeline: _SearchTimeline | None = None


class _Data(msgspec.Struct):
    search_by_raw_query: _SearchByRawQuery | None = None


class _Error(msgspec.Struct):
    code: object = -1
    message: object = ""


class _Page(msgspec.Struct):
    data: _Data | None = None
    errors: list[_Error] | None = None


_DECODER = msgspec.json.Decoder(_Page)


@dataclass(frozen=True)
class PageSummary:
    errors: list[tuple[int, str]]
    entries: int  # content entries (twscrape's _gql_entries filter)
    cursor: str | None  # Bottom cursor (twscrape's _get_cursor)


def _error_list(errors: list[_Error] | None) -> list[tuple[int, str]]:
    out = []
    for e in errors or ():
        try:
            code = int(e.code)  # type: ignore[call-overload]  # X sends a number or a string
        except (TypeError, ValueError):
            code = -1
        out.append((code, str(e.message)))
    return out


def summarize(text: str | bytes, cursor_type: str = "Bottom") -> PageSummary | None:
    """Errors, entry count and cursor of a SearchTimeline page; None when the skeleton
    cannot answer exactly as twscrape would (see the module doc)."""
    try:
        page = _DECODER.decode(text)
    except msgspec.DecodeError:  # malformed JSON or an unexpected shape: the generic path
        return None
    sbrq = page.data.search_by_raw_query if page.data is not None else None
    timeline = sbrq.search_timeline.timeline if sbrq and sbrq.search_timeline else None
    instructions = timeline.instructions if timeline is not None else None
    if instructions is None:
        return None
    entries = next((i.entries for i in instructions if i.entries is not None), None)
    if entries is None:
        return None
    count = len(entries)
    if entries and entries[0].entryId is not msgspec.UNSET:  # twscrape filters only then
        count = sum(
            1
            for e in entries
            if not (isinstance(e.entryId, str) and e.entryId.startswith(SKIP_ENTRY_PREFIXES))
        )
    for inst in instructions:
        # as twscrape: an empty "entries" list falls through to "entry"
        for e in inst.entries or ([inst.entry] if inst.entry is not None else []):
            if e.content is not None and e.content.cursorType == cursor_type:
                value = e.content.value
                return PageSummary(
                    _error_list(page.errors), count, value if isinstance(value, str) else None
                )
    return None  # no cursor in the instructions: twscrape searches the whole document
