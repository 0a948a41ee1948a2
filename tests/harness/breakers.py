"""The SDK's process-wide circuit breakers, watched by tests."""

from __future__ import annotations

from rentscout.resilience.breaker import StateChange
from rentscout.sdk.invoker import BREAKERS


def watch(target: str) -> list[StateChange]:
    """Every state change, from now on, of the process-wide breaker of `target` (the one the SDK's readers and
    the CLI use), reset first: a port reused within the session may name a target an earlier test opened."""
    changes: list[StateChange] = []
    breaker = BREAKERS.get(target)
    breaker.reset()
    breaker.add_listener(changes.append)
    return changes
