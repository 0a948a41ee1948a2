"""Sync wrappers: the async clients run on one private event loop in a daemon thread.

grpc.aio channels belong to the loop that created them, so a sync client creates its async twin
on that loop and submits every call there. The caller's ContextVars (e.g. a correlation id bound
with `rentscout.wire.correlation.correlation_id.set`) travel with each call.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any, TypeVar

T = TypeVar("T")


class LoopThread:
    """An event loop running forever in a daemon thread."""

    _shared: LoopThread | None = None
    _shared_lock = threading.Lock()

    def __init__(self, name: str = "rentscout-sdk-loop") -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name=name, daemon=True)
        self._thread.start()

    @classmethod
    def shared(cls) -> LoopThread:
        with cls._shared_lock:
            if cls._shared is None or cls._shared.loop.is_closed():
                cls._shared = cls()
            return cls._shared

    def run(self, awaitable: Awaitable[T]) -> T:
        if _running_loop() is self.loop:
            raise RuntimeError("a sync SDK client was called from its own event loop thread; use the async client")
        future = asyncio.run_coroutine_threadsafe(_as_coroutine(awaitable), self.loop)
        try:
            return future.result()
        except KeyboardInterrupt:
            future.cancel()
            raise

    def iterate(self, iterator: AsyncIterator[T]) -> Iterator[T]:
        """A sync iterator over an async one (closed properly when the caller stops early)."""
        try:
            while True:
                try:
                    item = self.run(iterator.__anext__())
                except StopAsyncIteration:
                    return
                yield item
        finally:
            aclose = getattr(iterator, "aclose", None)
            if aclose is not None and not self.loop.is_closed():
                self.run(aclose())

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=5)
        self.loop.close()


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


async def _as_coroutine(awaitable: Awaitable[T]) -> T:
    return await awaitable


def sync_methods(async_cls: type) -> Callable[[type], type]:
    """Class decorator: give the sync class a blocking twin of every public coroutine method of `async_cls`.

    The sync class keeps its async twin in `self._async` and its loop in `self._loop`.
    """

    def decorate(cls: type) -> type:
        for name, fn in vars(async_cls).items():
            if name.startswith("_") or name in vars(cls) or not inspect.iscoroutinefunction(fn):
                continue
            setattr(cls, name, _blocking(name, fn))
        return cls

    return decorate


def _blocking(name: str, fn: Callable[..., Awaitable[Any]]) -> Callable[..., Any]:
    @functools.wraps(fn)
    def method(self: Any, *args: Any, **kwargs: Any) -> Any:
        return self._loop.run(getattr(self._async, name)(*args, **kwargs))

    return method
