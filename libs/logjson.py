"""JSON log lines (`XGET_LOG_FORMAT=json`): one object per line with the time, level, logger,
message, and the current trace's trace_id/span_id plus task_id/post_id where the span has them,
so a log line leads to its trace and a task's logs can be filtered."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime

from opentelemetry import trace


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        span = trace.get_current_span()
        ctx = span.get_span_context()
        if ctx.is_valid:
            out["trace_id"] = format(ctx.trace_id, "032x")
            out["span_id"] = format(ctx.span_id, "016x")
            attrs = getattr(span, "attributes", None) or {}
            for name in ("task_id", "post_id", "keyword"):
                if f"xget.{name}" in attrs:
                    out[name] = attrs[f"xget.{name}"]
        for name in ("task_id", "post_id"):
            if hasattr(record, name):  # logger.info(..., extra={"task_id": ...})
                out[name] = getattr(record, name)
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str)
