"""A saturated pool is overload: a call that gets no pooled connection within its budget gets
RESOURCE_EXHAUSTED with a retry pushback (never UNAVAILABLE), while readiness' probe, on a connection of its
own, still answers; a pool that cannot connect at all is UNAVAILABLE."""

from __future__ import annotations

import pytest

from harness.servers import settings_for
from rentscout.devstack.instances import free_port
from rentscout.runtime.database import Database
from rentscout.runtime.errors import ResourceExhausted, Unavailable
from rentscout.wire.metadata import PUSHBACK_HEADER


async def test_a_saturated_pool_is_resource_exhausted_and_readiness_still_answers(service_env: dict[str, str]) -> None:
    db = Database(settings_for(service_env, db_pool_max_size=1, db_connect_timeout_seconds=0.5), "rentscout-pooltest")
    await db.start()
    try:
        async with db.connection() as held:
            assert await held.fetchval("SELECT 1") == 1
            with pytest.raises(ResourceExhausted) as err:
                async with db.connection():
                    pass
            assert any(k == PUSHBACK_HEADER for k, _ in err.value.to_status().trailing_metadata)
            assert await db.ping(1.0)  # the probe's own connection, not the pool's only one
        assert await db.fetchval("SHOW lock_timeout") == "2s"  # every pooled connection waits at most this
    finally:
        await db.close()


async def test_a_pool_that_cannot_connect_is_unavailable(service_env: dict[str, str]) -> None:
    env = {**service_env, "RENTSCOUT_DATABASE_URL": f"postgresql://postgres@127.0.0.1:{free_port()}/none"}
    db = Database(settings_for(env, db_pool_max_size=1, db_connect_timeout_seconds=0.5), "rentscout-pooltest")
    await db.start()
    try:
        with pytest.raises(Unavailable):
            async with db.connection():
                pass
        assert not await db.ping(0.5)
    finally:
        await db.close()
