"""The access line: one ECS document through logging, with the call's ids, peer, role and business fields."""

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


def emit(*calls: tuple[Any, ...]) -> list[dict[str, Any]]:
    """The access lines `calls` make through the server's own handler and formatter, as parsed documents."""
    out = io.StringIO()
    handler = logs.LineHandler(out)
    handler.setFormatter(logs.EcsJsonFormatter())
    line = logs.access_line("/rentscout.cache.v1.CacheQueryService/PriceStats", "OK")
    with only_handler(handler):
        for args in calls:
            line.emit(*args)
    return [orjson.loads(text) for text in out.getvalue().splitlines()]


def test_the_access_line_is_an_ecs_document_with_the_calls_ids_and_fields() -> None:
    tracer = TracerProvider().get_tracer("unit")
    token = context.correlation_id.set("cid-access-1")
    method = context.rpc_method.set("/rentscout.cache.v1.CacheQueryService/PriceStats")
    try:
        with tracer.start_as_current_span("rpc"):
            (doc,) = emit((0.0012, "ipv4:127.0.0.1:5000", "reader", {"cache.hit": True, "cache.source": "near"}))
    finally:
        context.rpc_method.reset(method)
        context.correlation_id.reset(token)
    assert doc.pop("@timestamp")[-1] == "Z"
    assert doc["correlation.id"] == "cid-access-1" and len(doc["trace.id"]) == 32 and len(doc["span.id"]) == 16
    assert doc["event.dataset"] == "rentscout.access" and doc["event.outcome"] == "success"
    assert doc["client.ip"] == "127.0.0.1" and doc["client.port"] == 5000 and doc["event.duration"] == 1_200_000
    assert doc["user.roles"] == ["reader"] and doc["cache.source"] == "near" and doc["cache.hit"] is True
    assert doc["log.level"] == "info" and doc["message"] == "rpc /rentscout.cache.v1.CacheQueryService/PriceStats OK"


def test_the_ids_passed_by_the_interceptor_win_over_the_context() -> None:
    (doc,) = emit((0.001, "ipv4:127.0.0.1:5001", None, None, ("cid-given", "a" * 32, "b" * 16)))
    assert (doc["correlation.id"], doc["trace.id"], doc["span.id"]) == ("cid-given", "a" * 32, "b" * 16)
    assert doc["user.roles"] == []


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


def test_the_line_names_the_configured_service() -> None:
    saved = dict(logs._SERVICE)
    try:
        for name in ("svc-one", "svc-two"):
            logs._SERVICE["service.name"] = name
            (doc,) = emit((0.001, "ipv4:127.0.0.1:5000", None))
            assert doc["service.name"] == name
    finally:
        logs._SERVICE.update(saved)


def test_on_a_loop_the_lines_of_one_iteration_are_written_together_at_its_end() -> None:
    import asyncio

    out = io.StringIO()
    handler = logs.LineHandler(out)
    handler.setFormatter(logs.EcsJsonFormatter())
    line = logs.access_line("/rentscout.cache.v1.CacheQueryService/Cities", "OK")

    async def calls() -> str:
        with only_handler(handler):
            line.emit(0.001, "ipv4:127.0.0.1:5001", "reader", {"cache.hit": True}, ("cid-a", "a" * 32, "b" * 16))
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
