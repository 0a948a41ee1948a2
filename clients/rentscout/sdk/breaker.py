"""The SDK's circuit breakers: the shared breaker (`rentscout.resilience.breaker`) publishing the client
metrics `rentscout_client_breaker_*`, and one breaker per target (`BreakerRegistry`).

See `rentscout.resilience.breaker` for the states and the call protocol.
"""

from __future__ import annotations

import threading

from rentscout.resilience import breaker as _shared
from rentscout.resilience.breaker import (
    STATE_VALUE,
    BreakerConfig,
    CircuitOpenError,
    CircuitState,
    Outcome,
    StateChange,
    WindowSnapshot,
    default_classify,
    open_message,
)
from rentscout.resilience.clock import SYSTEM_CLOCK, Clock
from rentscout.sdk import metrics

__all__ = [
    "BreakerConfig",
    "BreakerRegistry",
    "CircuitBreaker",
    "CircuitOpenError",
    "CircuitState",
    "ClientBreakerMetrics",
    "Outcome",
    "StateChange",
    "WindowSnapshot",
    "default_classify",
    "open_message",
]


class ClientBreakerMetrics:
    """Prometheus children bound once per breaker, so a call costs a few increments, no label lookups."""

    def __init__(self, name: str) -> None:
        self._name = name
        self._state = metrics.BREAKER_STATE.labels(name)
        calls = metrics.BREAKER_CALLS
        self._calls = {
            (o, s): calls.labels(name, o.value + ("_slow" if s else ""))
            for o in (Outcome.SUCCESS, Outcome.FAILURE)
            for s in (False, True)
        }
        self._ignored = calls.labels(name, "ignored")
        self._rejected = calls.labels(name, "rejected")

    def state(self, state: CircuitState) -> None:
        self._state.set(STATE_VALUE[state])

    def call(self, outcome: Outcome, slow: bool) -> None:
        (self._ignored if outcome is Outcome.IGNORE else self._calls[outcome, slow]).inc()

    def rejected(self) -> None:
        self._rejected.inc()

    def transition(self, change: StateChange) -> None:
        self.state(change.new)
        metrics.BREAKER_TRANSITIONS.labels(self._name, change.old.value, change.new.value).inc()


class CircuitBreaker(_shared.CircuitBreaker):
    """One breaker guards one target; with `metrics` it publishes `rentscout_client_breaker_*{target=name}`."""

    def __init__(
        self, name: str, config: BreakerConfig | None = None, *, clock: Clock = SYSTEM_CLOCK, metrics: bool = True
    ) -> None:
        super().__init__(name, config, clock=clock, observer=ClientBreakerMetrics(name) if metrics else None)


class BreakerRegistry:
    """One breaker per target name, created on first use with the registry's config."""

    def __init__(self, config: BreakerConfig | None = None, *, clock: Clock = SYSTEM_CLOCK, metrics: bool = True) -> None:
        self.config = config or BreakerConfig()
        self.clock = clock
        self.metrics = metrics
        self._breakers: dict[str, CircuitBreaker] = {}
        self._lock = threading.Lock()

    def get(self, name: str, config: BreakerConfig | None = None) -> CircuitBreaker:
        breaker = self._breakers.get(name)
        if breaker is None:
            with self._lock:
                breaker = self._breakers.get(name)
                if breaker is None:
                    breaker = CircuitBreaker(name, config or self.config, clock=self.clock, metrics=self.metrics)
                    self._breakers[name] = breaker
        return breaker

    def all(self) -> dict[str, CircuitBreaker]:
        return dict(self._breakers)
