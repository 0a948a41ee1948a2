"""Graceful degradation: `@handle_errors(default=...)` returns a fallback instead of raising.

It logs a failure once when it starts (with the stack trace) and stays quiet while the same kind of
failure repeats, then logs the recovery: a dependency that is down for an hour makes two log lines,
not one per call. Works on sync and async functions. Cancellation and KeyboardInterrupt pass through.
"""

from __future__ import annotations

import functools
import inspect
import logging
import threading
from collections.abc import Callable
from typing import Any

_MISSING = object()


class _Once:
    """Per-function memory of the failure currently being suppressed."""

    def __init__(self, name: str, logger: logging.Logger, level: int) -> None:
        self.name, self.logger, self.level = name, logger, level
        self.failing: type[BaseException] | None = None
        self.suppressed = 0
        self.lock = threading.Lock()

    def failed(self, exc: BaseException) -> None:
        with self.lock:
            first = self.failing is not type(exc)
            self.failing = type(exc)
            if not first:
                self.suppressed += 1
                return
            self.suppressed = 0
        self.logger.log(
            self.level, "%s failed, returning the default value (repeats are not logged): %s", self.name, exc, exc_info=exc
        )

    def succeeded(self) -> None:
        if self.failing is None:
            return
        with self.lock:
            failing, suppressed, self.failing = self.failing, self.suppressed, None
        if failing is not None:
            self.logger.info("%s recovered after %s (%d repeated failure(s) not logged)", self.name, failing.__name__, suppressed)


def handle_errors(
    default: Any = None,
    *,
    default_factory: Callable[[], Any] | None = None,
    exceptions: type[BaseException] | tuple[type[BaseException], ...] = Exception,
    logger: logging.Logger | None = None,
    log_level: int = logging.WARNING,
    log: bool = True,
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorate a function so that `exceptions` return `default` (or `default_factory()`)."""

    def fallback() -> Any:
        return default_factory() if default_factory is not None else default

    def decorate(fn: Callable[..., Any]) -> Callable[..., Any]:
        once = _Once(getattr(fn, "__qualname__", repr(fn)), logger or logging.getLogger(fn.__module__), log_level)

        if inspect.iscoroutinefunction(fn):

            @functools.wraps(fn)
            async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                try:
                    result = await fn(*args, **kwargs)
                except exceptions as exc:
                    if log:
                        once.failed(exc)
                    return fallback()
                if log:
                    once.succeeded()
                return result

            return async_wrapper

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            try:
                result = fn(*args, **kwargs)
            except exceptions as exc:
                if log:
                    once.failed(exc)
                return fallback()
            if log:
                once.succeeded()
            return result

        return wrapper

    return decorate
