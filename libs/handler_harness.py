"""A service's handler driven in memory, without a broker (in the spirit of faststream's
`TestKafkaBroker`): records go in encoded exactly as a producer writes them, through the same
decoding, batch handling and dead-lettering as the real consumer loop (libs/kafka.py's
`decode_batch` and `handle_isolating`), and what the handler would publish comes back.

    h = HandlerHarness(PAGES, PageHandler(0))
    out = await h.feed(h.record(RAW_PAGES, page, key="t1"))
    out.on(POSTS)           # the records it would publish on posts
    out.dead_letters        # DeadLetter records, with their cause

`MemoryProducer` takes the place of the Producer a service also publishes with directly.

A dependency failure propagates out of `feed`, as it makes the real loop wait and retry.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field

from aiokafka.structs import ConsumerRecord

from .declaration import ConsumerGroup
from .kafka import Handler, Outgoing, _headers, decode_batch, handle_isolating
from .records.base import Record
from .records.dead_letter import DeadLetter
from .topics import DEAD_LETTERS, TopicSpec


@dataclass
class Fed:
    """What one `feed` produced: every output in order, and the dead letters among them."""

    outputs: list[Outgoing] = field(default_factory=list)

    def on(self, spec: TopicSpec) -> list[Record]:
        return [o.record for o in self.outputs if o.spec is spec]

    @property
    def dead_letters(self) -> list[DeadLetter]:
        return [o.record for o in self.outputs if isinstance(o.record, DeadLetter)]

    @property
    def published(self) -> list[Outgoing]:
        """Outputs other than dead letters."""
        return [o for o in self.outputs if o.spec is not DEAD_LETTERS]


class MemoryProducer:
    """Stands in for the Producer a service publishes with outside its handler's return value
    (the reporter's dead reports, a lease request): every send is kept, in order."""

    def __init__(self) -> None:
        self.sent: list[Outgoing] = []

    async def send_and_wait(self, out: Outgoing) -> None:
        self.sent.append(out)

    async def send_all(self, outs: Sequence[Outgoing]) -> None:
        self.sent.extend(outs)

    def on(self, spec: TopicSpec) -> list[Record]:
        return [o.record for o in self.sent if o.spec is spec]


class HandlerHarness:
    """Feeds records to `handler` as the consumer group `group` would receive them."""

    def __init__(self, group: ConsumerGroup, handler: Handler, service: str | None = None):
        self.group = group
        self.handler = handler
        self.service = service or group.name
        self.specs = {s.name: s for s in group.inputs}
        self._next: dict[tuple[str, int], int] = defaultdict(int)

    def record(
        self,
        spec: TopicSpec,
        record: Record,
        *,
        key: str | None = None,
        partition: int = 0,
        headers: Sequence[tuple[str, bytes]] = (),
    ) -> ConsumerRecord:
        """`record` as the broker would hand it over: value, schema and body headers exactly as
        the Producer writes them, the next offset of its partition."""
        out = Outgoing(spec, key, record, tuple(headers))
        return self.raw(spec, out.record.encode(), _headers(out), key=key, partition=partition)

    def raw(
        self,
        spec: TopicSpec,
        value: bytes | None,
        headers: Sequence[tuple[str, bytes]] = (),
        *,
        key: str | None = None,
        partition: int = 0,
    ) -> ConsumerRecord:
        """Any bytes on the topic: what a third-party or broken producer might write."""
        if spec.name not in self.specs:
            raise ValueError(f"{self.group.name} does not consume {spec.name}")
        offset = self._next[(spec.name, partition)]
        self._next[(spec.name, partition)] += 1
        k = key.encode() if key is not None else None
        return ConsumerRecord(
            topic=spec.name,
            partition=partition,
            offset=offset,
            timestamp=int(time.time() * 1000),
            timestamp_type=0,
            key=k,
            value=value,
            checksum=None,
            serialized_key_size=len(k) if k else -1,
            serialized_value_size=len(value) if value else -1,
            headers=list(headers),
        )

    async def feed(self, *msgs: ConsumerRecord) -> Fed:
        """One batch through decoding and the handler, as the consumer loop runs it."""
        incoming, dead = decode_batch(self.service, self.specs, list(msgs))
        outs = list(dead)
        if incoming:
            outs.extend(await handle_isolating(self.service, self.handler, incoming, list(msgs)))
        return Fed(outs)
