"""Telemetry pieces without a broker: JSON log lines carry the trace, the Kafka header
propagation round-trips, and the lag formula's edges."""

from __future__ import annotations

import json
import logging
import math

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from libs import lag, tracing
from libs.logjson import JsonFormatter


def test_json_log_lines_carry_trace_and_task_ids():
    provider = TracerProvider()
    fmt = JsonFormatter()
    rec = logging.LogRecord("xget.test", logging.INFO, __file__, 1, "page %d", (3,), None)
    with provider.get_tracer("t").start_as_current_span(
        "x", attributes={"xget.task_id": "od-1", "xget.keyword": "tesla"}
    ) as sp:
        line = json.loads(fmt.format(rec))
    assert line["message"] == "page 3" and line["level"] == "INFO"
    assert line["trace_id"] == format(sp.get_span_context().trace_id, "032x")
    assert line["task_id"] == "od-1" and line["keyword"] == "tesla"
    outside = json.loads(fmt.format(rec))
    assert "trace_id" not in outside and "task_id" not in outside


def test_trace_context_round_trips_through_kafka_headers(monkeypatch):
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    monkeypatch.setattr(tracing, "_installed", True)
    tracer = provider.get_tracer("t")
    with tracer.start_as_current_span("producer") as parent:
        headers: list[tuple[str, bytes]] = [("xget-schema", b"xget.Post/v1")]
        tracing.inject(headers)
    assert [k for k, _ in headers] == ["xget-schema", "traceparent"]
    tracing.inject(headers)  # a record that already has a context keeps it
    assert sum(k == "traceparent" for k, _ in headers) == 1
    with tracer.start_as_current_span("consumer", context=tracing.extract(headers)):
        pass
    spans = {s.name: s for s in exporter.get_finished_spans()}
    assert spans["consumer"].parent.span_id == parent.get_span_context().span_id
    assert spans["consumer"].context.trace_id == parent.get_span_context().trace_id


def test_recommendation_edges():
    assert lag.recommend(0, 0.0, 0.0, 1, 12, 300) == 1  # nothing to do
    assert lag.recommend(500, 0.0, 0.0, 1, 12, 300) == 12  # speed unknown: all partitions
    # 100/s per member, 50/s inflow, 30,000 behind, drain in 300 s: (50 + 100) / 100 → 2
    assert lag.recommend(30_000, 200.0, 50.0, 2, 12, 300) == 2
    assert lag.recommend(10**9, 200.0, 50.0, 2, 12, 300) == 12  # capped at partitions
    assert lag.drain_seconds(0, 0.0, 0.0) == 0.0
    assert math.isinf(lag.drain_seconds(10, 5.0, 5.0))
    assert lag.drain_seconds(100, 15.0, 5.0) == 10.0


def test_span_in_joins_the_records_trace_not_the_batchs(monkeypatch):
    """A media download or webhook delivery done while handling a batch belongs to the trace
    its record carries (the batch's current span may be another task's)."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    monkeypatch.setattr(tracing, "_installed", True)
    tracer = provider.get_tracer("t")
    monkeypatch.setattr(tracing, "tracer", lambda: tracer)
    with tracer.start_as_current_span("task a") as a:
        headers: list[tuple[str, bytes]] = [("xget-schema", b"xget.MediaJob/v1")]
        tracing.inject(headers)
    record_headers = dict(headers)  # as Incoming.headers holds them
    assert tracing.trace_headers(record_headers) == (headers[1],)
    with tracer.start_as_current_span("batch of task b") as b:
        with tracing.span_in(
            record_headers, "media download", **{"xget.task_id": "a", "xget.none": None}
        ):
            pass
        with tracing.span_in((), "no context carried"):
            pass
    spans = {s.name: s for s in exporter.get_finished_spans()}
    download = spans["media download"]
    assert download.context.trace_id == a.get_span_context().trace_id
    assert download.parent.span_id == a.get_span_context().span_id
    assert dict(download.attributes) == {"xget.task_id": "a"}
    assert spans["no context carried"].parent.span_id == b.get_span_context().span_id
