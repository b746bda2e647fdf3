"""Tracing (OpenTelemetry): one task is one trace across every service.

The W3C trace context travels in Kafka record headers (`traceparent`, `tracestate`): the
Producer injects the current span's context into every record it sends, and the ConsumerLoop
handles every record under a span that is a child of the context its headers carry: the
records of a batch that share a parent (the 20 posts of one X page) are handled under one
group span with their count (`messaging.batch.message_count`), and each of them also gets a
span of its own, a child of the group span with its partition, offset, key and ids
(`record_spans`). Those record spans are built finished and handed straight to the span
processor: through Tracer.start_span/end they cost ~37 µs each with export, which took
bench/telemetry.py's ratio to 0.81–0.91; built directly, ~12 µs.
Handlers work on batches, so an output record is attributed to the input record it came from
by key, else by task id, else to the batch's first record (libs/kafka.py `_trace_outputs`).
Work a handler does for one record of its batch (a media download, a webhook delivery) is a
span in that record's own trace (`span_in`), whatever span the batch runs under.

Exporters by setting (`XGET_TRACE_EXPORTER`): `otlp` to a collector (production, endpoint
`XGET_OTLP_ENDPOINT`), `file` (JSON lines, embedded mode and tests), `console`, or `none`
(the default: no provider is installed and every call here is a cheap no-op).
Span attributes carry task id, keyword, counts and account names — never secrets.
The gateway's HTTP server spans come from FastAPI itself (≥ 0.165 traces requests through the
global tracer provider installed here), so a POSTed task's command carries the request's trace.
"""

from __future__ import annotations

import logging
import random
import threading
from collections.abc import Mapping, Sequence
from typing import cast

import orjson
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.propagators.textmap import Getter, Setter
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from .settings import Settings

log = logging.getLogger(__name__)

TRACER_NAME = "xget"
HEADERS = ("traceparent", "tracestate")
_propagator = TraceContextTextMapPropagator()
_installed = False
_span_ids = random.Random()  # as the SDK's RandomIdGenerator
_processor = None  # the span processor setup_tracing installed (record_spans feed it)
# Spans wait here for export; the defaults (2048) would drop spans of one large batch.
QUEUE_SPANS, EXPORT_BATCH = 65_536, 4_096


class _ListGetter(Getter):
    """Kafka headers as aiokafka gives them: a sequence of (str, bytes)."""

    def get(self, carrier, key):
        for k, v in carrier or ():
            if k == key:
                return [v.decode("latin-1") if isinstance(v, bytes) else v]
        return None

    def keys(self, carrier):
        return [k for k, _ in carrier or ()]


class _ListSetter(Setter):
    def set(self, carrier, key, value):
        carrier.append((key, value.encode("latin-1")))


_getter, _setter = _ListGetter(), _ListSetter()


def tracer() -> trace.Tracer:
    return trace.get_tracer(TRACER_NAME)


def enabled() -> bool:
    return _installed


def setup_tracing(settings: Settings, service: str, exporter=None) -> None:
    """Install the process's tracer provider once (`exporter` overrides the setting: tests)."""
    global _installed, _processor
    kind = settings.trace_exporter
    if _installed or (kind == "none" and exporter is None):
        return
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor, SpanExporter

    provider = TracerProvider(resource=Resource.create({"service.name": service}))

    def batched(exp: SpanExporter, delay_ms: float | None = None) -> BatchSpanProcessor:
        return BatchSpanProcessor(
            exp,
            max_queue_size=QUEUE_SPANS,
            max_export_batch_size=EXPORT_BATCH,
            schedule_delay_millis=delay_ms,
        )

    processor: SpanProcessor
    if exporter is not None:
        processor = SimpleSpanProcessor(exporter)
    elif kind == "otlp":
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        processor = batched(
            OTLPSpanExporter(endpoint=settings.otlp_endpoint.rstrip("/") + "/v1/traces")
        )
    elif kind == "console":
        from opentelemetry.sdk.trace.export import ConsoleSpanExporter

        processor = batched(ConsoleSpanExporter())
    else:  # file
        # Duck-typed SpanExporter: subclassing would import the SDK with this module.
        processor = batched(cast(SpanExporter, JsonLinesExporter(settings.trace_file)), 500)
    provider.add_span_processor(processor)
    _processor = processor
    trace.set_tracer_provider(provider)
    _installed = True
    log.info("tracing on: %s exporter", kind if exporter is None else type(exporter).__name__)


def shutdown_tracing() -> None:
    provider = trace.get_tracer_provider()
    if hasattr(provider, "shutdown"):
        provider.shutdown()


def inject(headers: list[tuple[str, bytes]], ctx=None) -> None:
    """Add the W3C context of `ctx` (default: the current span) to Kafka headers."""
    if _installed and not any(k == "traceparent" for k, _ in headers):
        _propagator.inject(headers, context=ctx, setter=_setter)


def extract(headers: Sequence | Mapping | None):
    """The context a consumed record's headers carry (the current one when none). `headers`:
    aiokafka's (key, bytes) pairs, or a dict of them (Incoming.headers)."""
    if isinstance(headers, Mapping):
        headers = list(headers.items())
    return _propagator.extract(headers or (), getter=_getter)


def trace_headers(headers: Sequence | Mapping | None) -> tuple[tuple[str, bytes], ...]:
    """Only the W3C trace context of a record's headers: what to keep to join its trace later."""
    items = headers.items() if isinstance(headers, Mapping) else headers or ()
    return tuple((k, v) for k, v in items if k in HEADERS)


def context_with(span: trace.Span):
    return trace.set_span_in_context(span, otel_context.Context())


def record_spans(group: trace.Span, name: str, attributes: Sequence[Mapping]) -> None:
    """One finished span per `attributes` entry, each a child of the ended `group` span and
    lasting as long (the records were handled together): a span per record of a batch. They
    are built as ReadableSpans and handed to the installed span processor directly, skipping
    the sampler (the group's decision holds), the active-span bookkeeping and on_start."""
    from opentelemetry.sdk.trace import ReadableSpan

    parent = group.get_span_context()
    if _processor is None or not parent.is_valid or not parent.trace_flags.sampled:
        return
    resource = getattr(group, "resource", None)
    scope = getattr(group, "instrumentation_scope", None)
    start, end = getattr(group, "start_time", None), getattr(group, "end_time", None)
    for attrs in attributes:
        ctx = trace.SpanContext(
            parent.trace_id,
            _span_ids.getrandbits(64) or 1,
            False,
            parent.trace_flags,
            parent.trace_state,
        )
        _processor.on_end(
            ReadableSpan(
                name=name,
                context=ctx,
                parent=parent,
                resource=resource,
                attributes=attrs,
                kind=trace.SpanKind.CONSUMER,
                start_time=start,
                end_time=end,
                instrumentation_scope=scope,
            )
        )


def record_ids(record) -> dict:
    """The ids that tell one record of a group from another (post, user, page)."""
    attrs = {}
    for name in ("post_id", "user_id", "page_no"):
        value = getattr(record, name, None)
        if isinstance(value, (str, int)) and value != "":
            attrs[f"xget.{name}"] = value
    return attrs


def record_attributes(record) -> dict:
    """Task id, keyword and similar attributes of a record, where it has them."""
    attrs = {}
    for name in ("task_id", "keyword", "slice_id", "post_id", "account", "page_no"):
        value = getattr(record, name, None)
        if isinstance(value, (str, int)) and value != "":
            attrs[f"xget.{name}"] = value
    entries = getattr(record, "entries", None)
    if isinstance(entries, int):
        attrs["xget.entries"] = entries
    return attrs


class JsonLinesExporter:
    """Appends each finished span as one JSON line to a file (embedded mode, tests)."""

    def __init__(self, path: str):
        self.path = path
        self._lock = threading.Lock()

    def export(self, spans):  # -> SpanExportResult (imported lazily with the SDK)
        from opentelemetry.sdk.trace.export import SpanExportResult

        lines = []
        for s in spans:
            parent = s.parent
            lines.append(
                orjson.dumps(
                    {
                        "name": s.name,
                        "trace_id": format(s.context.trace_id, "032x"),
                        "span_id": format(s.context.span_id, "016x"),
                        "parent_id": format(parent.span_id, "016x") if parent else None,
                        "service": s.resource.attributes.get("service.name"),
                        "start_ns": s.start_time,
                        "end_ns": s.end_time,
                        "status": s.status.status_code.name,
                        "attributes": dict(s.attributes or {}),
                    },
                    default=str,
                )
            )
        with self._lock, open(self.path, "ab") as f:
            f.write(b"\n".join(lines) + b"\n")
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        pass

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True


class record_span:
    """`with record_span(service, msg, record):` — a span for one consumed record, child of
    the context in its headers and current inside the block (tasks created there inherit it)."""

    def __init__(self, service: str, msg, record=None):
        self.service, self.msg, self.record = service, msg, record
        self._cm = None

    def __enter__(self):
        if not _installed:
            return None
        attrs = {
            "xget.service": self.service,
            "messaging.destination.name": self.msg.topic,
            "messaging.kafka.partition": self.msg.partition,
            "messaging.kafka.offset": self.msg.offset,
        }
        if self.record is not None:
            attrs.update(record_attributes(self.record))
        self._cm = tracer().start_as_current_span(
            f"{self.service} handle {self.msg.topic}",
            context=extract(self.msg.headers),
            kind=trace.SpanKind.CONSUMER,
            attributes=attrs,
        )
        return self._cm.__enter__()

    def __exit__(self, *exc):
        if self._cm is not None:
            return self._cm.__exit__(*exc)
        return False


def span(name: str, **attributes):
    """A child span of the current context (a no-op span when tracing is off)."""
    return tracer().start_as_current_span(name, attributes=_scalars(attributes))


def span_in(headers: Sequence | Mapping | None, name: str, **attributes):
    """A span in the trace of a record (child of the context its `headers` carry), current
    inside the block: for work a batch handler does for one record of the batch (a media
    download, a webhook delivery), which belongs to that record's task and not to the batch.
    A no-op span when tracing is off."""
    if not _installed:
        return tracer().start_as_current_span(name)
    carried = trace_headers(headers)  # none: under the current span, not a new trace
    return tracer().start_as_current_span(
        name, context=extract(carried) if carried else None, attributes=_scalars(attributes)
    )


def _scalars(attributes: dict) -> dict:
    return {k: v for k, v in attributes.items() if isinstance(v, (str, int, float, bool))}
