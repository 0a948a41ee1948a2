"""The SDK's resilience stack against real grpc.aio servers run by the shared runtime."""

from __future__ import annotations

import asyncio
import dataclasses

import grpc
import pytest
from prometheus_client import REGISTRY

from harness.fakes import ScriptedCache, factory
from harness.servers import in_process
from rentscout.devstack.instances import free_port
from rentscout.resilience.breaker import CircuitBreaker
from rentscout.sdk import (
    CacheQueryClient,
    CircuitOpenError,
    CircuitState,
    DeadlineExceededError,
    InvalidArgumentError,
    RetryPolicy,
    SyncCacheQueryClient,
    UnauthenticatedError,
    UnavailableError,
    codes,
    errors,
)
from rentscout.sdk.channel import ChannelConfig
from rentscout.sdk.invoker import default_breaker_config


def state(breaker: CircuitBreaker) -> CircuitState:
    """The breaker's state, read afresh: to mypy, `breaker.state` stays what an earlier assert narrowed it to."""
    return breaker.state


FAST_RETRY = RetryPolicy(max_attempts=4, initial_delay=0.01, max_delay=0.05)
FAST_CHANNEL = ChannelConfig(initial_reconnect_backoff=0.05, max_reconnect_backoff=0.2)


def client(port: int, **kw: object) -> CacheQueryClient:
    kw.setdefault("retry", FAST_RETRY)
    kw.setdefault("channel", FAST_CHANNEL)
    kw.setdefault("timeout", 10.0)
    return CacheQueryClient(f"127.0.0.1:{port}", **kw)  # type: ignore[arg-type]


async def test_a_server_failing_twice_then_answering_is_retried_to_success(service_env: dict[str, str]) -> None:
    servicer = ScriptedCache(failures=2)
    async with in_process([factory(servicer)], service_env) as host, client(host.port, token="secret-token-1") as c:
        reply = await c.price_stats("Moscow", "apartment")
    assert reply.count == 42
    assert servicer.calls["PriceStats"] == 3
    cids = {md["x-correlation-id"] for md in servicer.metadata}
    assert len(cids) == 1  # one logical call, one correlation id on every attempt
    assert [md.get("grpc-previous-rpc-attempts") for md in servicer.metadata] == [None, "1", "2"]
    assert all(md["authorization"] == "Bearer secret-token-1" for md in servicer.metadata)


async def test_retries_stop_at_max_attempts_with_the_servers_error(service_env: dict[str, str]) -> None:
    servicer = ScriptedCache(failures=10)
    async with in_process([factory(servicer)], service_env) as host, client(host.port) as c:
        with pytest.raises(UnavailableError) as info:
            await c.price_stats("Moscow")
    assert servicer.calls["PriceStats"] == 4
    assert info.value.details == "warming up" and info.value.correlation_id
    assert any("all 4 attempts failed" in note for note in info.value.__notes__)
    retried = REGISTRY.get_sample_value(
        "rentscout_client_retries_total", {"target": f"127.0.0.1:{host.port}", "method": "PriceStats", "code": "UNAVAILABLE"}
    )
    assert retried == 3


async def test_invalid_argument_is_not_retried_and_carries_violations(service_env: dict[str, str]) -> None:
    servicer = ScriptedCache()
    async with in_process([factory(servicer)], service_env) as host, client(host.port) as c:
        # breakers are per target and the port may be a reused one: count this call's effect only
        failures_before = c.breaker.snapshot().failures
        with pytest.raises(InvalidArgumentError) as info:
            await c.cities()
    assert servicer.calls["Cities"] == 1
    assert info.value.violations == [("city", "must not be empty")]
    assert state(c.breaker) is CircuitState.CLOSED and c.breaker.snapshot().failures == failures_before


async def test_overload_is_retried_only_for_idempotent_calls_and_pushback_is_honoured(service_env: dict[str, str]) -> None:
    servicer = ScriptedCache()
    servicer.abort_with = (grpc.StatusCode.RESOURCE_EXHAUSTED, "too many exports", ())
    lenient = dataclasses.replace(default_breaker_config(), consecutive_failures=0)  # keep it closed here
    async with in_process([factory(servicer)], service_env) as host, client(host.port, breaker=lenient) as c:
        from rentscout.cache.v1 import cache_pb2

        request = cache_pb2.PopularPropertiesRequest(city="Moscow")
        with pytest.raises(errors.ResourceExhaustedError):
            await c._invoker.unary("PopularProperties", request, idempotent=False)
        assert servicer.calls["PopularProperties"] == 1
        with pytest.raises(errors.ResourceExhaustedError):
            await c._invoker.unary("PopularProperties", request, idempotent=True)
        assert servicer.calls["PopularProperties"] == 1 + 4
        servicer.abort_with = (grpc.StatusCode.UNAVAILABLE, "draining", (("grpc-retry-pushback-ms", "-1"),))
        with pytest.raises(UnavailableError) as info:
            await c.popular_properties("Moscow")
        assert servicer.calls["PopularProperties"] == 5 + 1  # the server said: do not retry
        assert info.value.retry_pushback == -1.0


async def test_attempt_timeouts_are_retried_inside_the_overall_deadline(service_env: dict[str, str]) -> None:
    servicer = ScriptedCache()
    servicer.delay = 5.0
    async with in_process([factory(servicer)], service_env) as host, client(host.port, timeout=1.0, attempt_timeout=0.2) as c:
        with pytest.raises(DeadlineExceededError):
            await c.property_types()
    assert servicer.calls["PropertyTypes"] >= 2  # the attempt limit expired first and was retried
    # each attempt lasts its whole 0.2 s (the servicer never answers), so however the machine schedules,
    # no more than 1.0 / 0.2 attempts fit in the overall deadline: nothing ran past it
    assert servicer.calls["PropertyTypes"] <= 5


async def test_authentication_failure_is_typed_and_not_retried(service_env: dict[str, str]) -> None:
    servicer = ScriptedCache()
    async with in_process([factory(servicer)], service_env, auth_tokens="reader-token-1:reader") as host:
        async with client(host.port, token="wrong-token-9") as c:
            with pytest.raises(UnauthenticatedError):
                await c.price_stats("Moscow")
        async with client(host.port, token="reader-token-1") as c:
            assert (await c.price_stats("Moscow")).count == 42
    assert servicer.calls["PriceStats"] == 1  # the rejected call never reached the servicer


async def test_breaker_opens_on_a_dead_server_fails_fast_and_recovers_on_the_same_port(service_env: dict[str, str]) -> None:
    port = free_port()
    target = f"127.0.0.1:{port}"
    breaker = dataclasses.replace(default_breaker_config(), recovery_timeout=0.5, half_open_probes=1)
    c = client(port, breaker=breaker, retry=RetryPolicy(max_attempts=1))
    try:
        servicer = ScriptedCache()
        async with in_process([factory(servicer)], service_env, port=port, grace=0.5) as host:
            assert host.port == port
            assert (await c.price_stats("Moscow")).count == 42
        # the server is gone: five failures open the breaker
        for _ in range(5):
            with pytest.raises(UnavailableError) as info:
                await c.price_stats("Moscow")
            assert not isinstance(info.value, CircuitOpenError)
        assert state(c.breaker) is CircuitState.OPEN
        rejected_before = (
            REGISTRY.get_sample_value("rentscout_client_breaker_calls_total", {"target": target, "outcome": "rejected"}) or 0
        )
        with pytest.raises(CircuitOpenError) as info:
            await c.price_stats("Moscow")
        assert info.value.target == target and "5 consecutive failures" in str(info.value)
        assert (
            REGISTRY.get_sample_value("rentscout_client_breaker_calls_total", {"target": target, "outcome": "rejected"})
            == rejected_before + 1
        )
        # the server comes back on the same port: after the recovery timeout a probe closes the breaker
        servicer = ScriptedCache()
        async with in_process([factory(servicer)], service_env, port=port, grace=0.5):
            reply = None
            for _ in range(100):
                try:
                    reply = await c.price_stats("Moscow")
                    break
                except UnavailableError:  # open (fail fast) or the channel still reconnecting
                    await asyncio.sleep(0.1)
            assert reply is not None and reply.count == 42
            assert state(c.breaker) is CircuitState.CLOSED
            assert servicer.calls["PriceStats"] >= 1
    finally:
        await c.close()


async def test_sync_client_runs_the_same_stack(service_env: dict[str, str]) -> None:
    servicer = ScriptedCache(failures=1)
    async with in_process([factory(servicer)], service_env) as host:

        def blocking() -> int:
            with SyncCacheQueryClient(f"127.0.0.1:{host.port}", retry=FAST_RETRY, timeout=5) as sync_client:
                count: int = sync_client.price_stats("Moscow").count
                return count

        # the sync client blocks, so call it from a worker thread while this loop serves
        assert await asyncio.to_thread(blocking) == 42
    assert servicer.calls["PriceStats"] == 2


def test_retryable_code_table_is_the_documented_one() -> None:
    assert {grpc.StatusCode.UNAVAILABLE} == codes.ALWAYS_RETRYABLE
    assert {grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.ABORTED} == codes.IDEMPOTENT_RETRYABLE


async def test_round_robin_spreads_calls_over_every_address(service_env: dict[str, str]) -> None:
    first, second = ScriptedCache(), ScriptedCache()
    # a multi-address target stands in for a headless Service's DNS records
    async with (
        in_process([factory(first)], service_env) as a,
        in_process([factory(second)], service_env) as b,
        CacheQueryClient(f"ipv4:127.0.0.1:{a.port},127.0.0.1:{b.port}", timeout=5) as c,
    ):
        for _ in range(20):
            assert (await c.price_stats("Moscow")).count == 42
    counts = [first.calls.get("PriceStats", 0), second.calls.get("PriceStats", 0)]
    assert sum(counts) == 20 and min(counts) >= 1  # both addresses served calls (pick_first sends all to one)
