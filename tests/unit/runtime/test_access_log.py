"""The access line written directly to the server's LineHandler is the line logging would have written."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import orjson
from opentelemetry.sdk.trace import TracerProvider

from rentscout.runtime import context, logs


@contextmanager
def only_handler(*handlers: logging.Handler) -> Iterator[None]:
    """The root logger with exactly `handlers` (pytest's own capture handlers set aside)."""
    root = logging.getLogger()
    saved, level = list(root.handlers), root.level
    root.handlers[:] = list(handlers)
    root.setLevel(logging.INFO)
    try:
        yield
    finally:
        root.handlers[:] = saved
        root.setLevel(level)


def emit_twice() -> tuple[dict[str, Any], dict[str, Any], bool]:
    """The same access line through the direct path and through logging (a second handler attached)."""
    direct_out, logged_out = io.StringIO(), io.StringIO()
    line = logs.access_line("/rentscout.cache.v1.CacheQueryService/PriceStats", "OK")
    tracer = TracerProvider().get_tracer("unit")
    token = context.correlation_id.set("cid-access-1")
    method = context.rpc_method.set("/rentscout.cache.v1.CacheQueryService/PriceStats")
    try:
        with tracer.start_as_current_span("rpc"):
            direct = logs.LineHandler(direct_out)
            direct.setFormatter(logs.EcsJsonFormatter())
            with only_handler(direct):
                took_direct = logs._only_handler(logging.getLogger("rentscout.events"), logging.INFO) is direct
                line.emit(0.0012, "ipv4:127.0.0.1:5000", "reader", {"cache.hit": True, "cache.source": "near"})
            logged = logs.LineHandler(logged_out)
            logged.setFormatter(logs.EcsJsonFormatter())
            with only_handler(logged, logging.NullHandler()):
                line.emit(0.0012, "ipv4:127.0.0.1:5000", "reader", {"cache.hit": True, "cache.source": "near"})
    finally:
        context.rpc_method.reset(method)
        context.correlation_id.reset(token)
    return orjson.loads(direct_out.getvalue()), orjson.loads(logged_out.getvalue()), took_direct


def test_the_direct_line_has_the_fields_of_the_logged_line() -> None:
    direct, logged, took_direct = emit_twice()
    assert took_direct
    assert direct.pop("@timestamp")[-1] == logged.pop("@timestamp")[-1] == "Z"
    assert direct == logged
    assert direct["correlation.id"] == "cid-access-1" and len(direct["trace.id"]) == 32
    assert direct["event.dataset"] == "rentscout.access" and direct["client.port"] == 5000
    assert direct["user.roles"] == ["reader"] and direct["cache.source"] == "near"


def test_a_filter_or_another_handler_sends_the_line_through_logging() -> None:
    handler = logs.LineHandler(io.StringIO())
    events = logging.getLogger("rentscout.events")
    with only_handler(handler):
        assert logs._only_handler(events, logging.INFO) is handler
        handler.setLevel(logging.WARNING)
        assert logs._only_handler(events, logging.INFO) is None  # below the handler's level
        assert logs._only_handler(events, logging.WARNING) is handler
        handler.addFilter(lambda record: True)
        assert logs._only_handler(events, logging.WARNING) is None


def members(line: str) -> list[str]:
    """The top-level member names of one JSON line, duplicates kept (Elasticsearch refuses duplicates)."""
    names: list[str] = []

    def pairs(items: list[tuple[str, object]]) -> dict[str, object]:
        names[:] = [k for k, _ in items]
        return dict(items)

    json.loads(line, object_pairs_hook=pairs)
    return names


def test_a_business_field_named_like_a_constant_member_is_written_once() -> None:
    out = io.StringIO()
    handler = logs.LineHandler(out)
    handler.setFormatter(logs.EcsJsonFormatter())
    line = logs.access_line("/rentscout.cache.v1.CacheQueryService/PriceStats", "OK")
    with only_handler(handler):
        line.emit(0.001, "ipv4:127.0.0.1:5000", None, {"event.outcome": "odd", "cache.hit": False})
        line.emit(0.001, "ipv4:127.0.0.1:5000", None, {"cache.hit": True})
    first, second = out.getvalue().splitlines()
    for text in (first, second):
        names = members(text)
        assert len(names) == len(set(names)), names
    assert orjson.loads(first)["event.outcome"] == "odd" and orjson.loads(second)["event.outcome"] == "success"


def test_the_constant_part_follows_the_configured_service() -> None:
    line = logs.access_line("/rentscout.cache.v1.CacheQueryService/PriceStats", "OK")
    saved = dict(logs._SERVICE)
    try:
        for name in ("svc-one", "svc-two"):
            logs._SERVICE["service.name"] = name
            assert orjson.loads(line.line(0.0, 0.001, "ipv4:127.0.0.1:5000", None))["service.name"] == name
    finally:
        logs._SERVICE.update(saved)


def test_on_a_loop_the_line_is_made_at_the_flush_with_the_calls_own_values() -> None:
    import asyncio

    out = io.StringIO()
    handler = logs.LineHandler(out)
    handler.setFormatter(logs.EcsJsonFormatter())
    line = logs.access_line("/rentscout.cache.v1.CacheQueryService/Cities", "OK")
    errors: list[str] = []
    handler.handleError = lambda record: errors.append(record.getMessage())  # type: ignore[method-assign]

    async def calls() -> str:
        with only_handler(handler):
            fields: dict[str, object] = {"cache.hit": True}
            line.emit(0.001, "ipv4:127.0.0.1:5001", "reader", fields, ("cid-a", "a" * 32, "b" * 16))
            bad_key: dict[Any, object] = {1: "not a field name"}
            line.emit(0.001, "ipv4:127.0.0.1:5003", None, bad_key, ("x", "", ""))  # cannot be made
            line.emit(0.002, "ipv4:127.0.0.1:5002", None, None, ("cid-b", "c" * 32, "d" * 16))
            pending = out.getvalue()  # nothing written before the loop's iteration ends
            await asyncio.sleep(0)
            await asyncio.sleep(0)
            return pending

    assert asyncio.run(calls()) == ""
    first, second = (orjson.loads(text) for text in out.getvalue().splitlines())
    assert (first["correlation.id"], first["trace.id"], first["client.port"]) == ("cid-a", "a" * 32, 5001)
    assert first["cache.hit"] is True and first["user.roles"] == ["reader"]
    assert (second["correlation.id"], second["span.id"], second["event.duration"]) == ("cid-b", "d" * 16, 2_000_000)
    assert errors == ["access line"]  # the broken one was reported, and did not cost the others their lines
