"""Capture the runtime's ECS JSON log lines in-process, formatted exactly as servers print them."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import orjson

from rentscout.runtime.logs import EcsJsonFormatter


class _ListHandler(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.setFormatter(EcsJsonFormatter())
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


class CapturedLogs:
    def __init__(self, handler: _ListHandler) -> None:
        self._handler = handler

    @property
    def lines(self) -> list[str]:
        return list(self._handler.lines)

    def records(self) -> list[dict[str, Any]]:
        return [orjson.loads(line) for line in self._handler.lines]


@contextmanager
def capture_logs(level: int = logging.INFO) -> Iterator[CapturedLogs]:
    root = logging.getLogger()
    handler = _ListHandler()
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(min(level, old_level) if old_level else level)
    try:
        yield CapturedLogs(handler)
    finally:
        root.removeHandler(handler)
        root.setLevel(old_level)
