"""The Flight reader's stall watchdog: a DoGet that delivers nothing within its limit is cancelled, once."""

from __future__ import annotations

import threading

from rentscout.sdk.flight import _Silence


class Reader:
    """Stands in for pyarrow's FlightStreamReader: records `cancel()`."""

    def __init__(self) -> None:
        self.cancelled = threading.Event()
        self.calls = 0

    def cancel(self) -> None:
        self.calls += 1
        self.cancelled.set()


def test_a_silent_reader_is_cancelled() -> None:
    reader = Reader()
    silence = _Silence(0.05, 60.0)
    silence.watch(reader)
    assert reader.cancelled.wait(30)
    silence.stop()
    assert silence.fired and reader.calls == 1


def test_a_reader_watched_after_the_limit_is_cancelled_at_once() -> None:
    silence = _Silence(0.01, 60.0)
    while not silence.fired:  # fired before do_get returned its reader
        threading.Event().wait(0.01)
    reader = Reader()
    silence.watch(reader)
    assert reader.calls == 1


def test_a_stopped_watchdog_never_cancels() -> None:
    reader = Reader()
    silence = _Silence(60.0, 60.0)
    silence.watch(reader)
    silence.heard()
    silence.stop()
    assert not silence.fired and reader.calls == 0
