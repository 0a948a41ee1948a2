"""CacheQueryService: the popular read queries served through the cache engine, plus invalidation and stats.

Query RPCs are generated from the query registry and work on bytes both ways: a request's bytes
name its entry (decoded once per distinct request, see requests.py), and a hit sends stored bytes
with the CacheInfo appended, never re-serializing the response (see entry.py). Clients see ordinary
messages.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import grpc

from rentscout.cache.v1 import cache_pb2
from rentscout.cache_service.engine import QueryCache
from rentscout.cache_service.keys import CITIES_TAG, TYPES_TAG, GlobError, city_tag, parse_glob
from rentscout.cache_service.queries import QUERIES
from rentscout.cache_service.registry import CachedQuery
from rentscout.cache_service.requests import RequestKeys, check_city
from rentscout.cache_service.settings import CacheSettings
from rentscout.cache_service.store import RedisUnavailable
from rentscout.runtime import config
from rentscout.runtime.context import annotate
from rentscout.runtime.errors import NotFound, Unavailable, Violations
from rentscout.runtime.resources import Resources
from rentscout.runtime.server import ServiceSpec
from rentscout.wire.validation import has_control_chars

SERVICE_NAME = "rentscout.cache.v1.CacheQueryService"
_log = logging.getLogger(__name__)
MAX_PATTERN_LENGTH, MAX_TAGS, MAX_TAG_LENGTH = 512, 100, 200
_SERVICE = cache_pb2.DESCRIPTOR.services_by_name["CacheQueryService"]


class CacheQueryServicer:
    def __init__(self, engine: QueryCache) -> None:
        self.engine = engine

    # -- admin and stats ----------------------------------------------------------------------

    async def Invalidate(
        self,
        request: cache_pb2.InvalidateRequest,
        ctx: grpc.aio.ServicerContext[cache_pb2.InvalidateRequest, cache_pb2.InvalidateResponse],
    ) -> cache_pb2.InvalidateResponse:
        v = Violations()
        prefix = self.engine.keys.namespace + ":"
        if bool(request.pattern) == bool(request.tags):
            v.add("pattern", "set exactly one of pattern and tags")
        if request.pattern:
            if len(request.pattern) > MAX_PATTERN_LENGTH:
                v.add("pattern", f"must be at most {MAX_PATTERN_LENGTH} characters")
            elif has_control_chars(request.pattern):
                v.add("pattern", "must not contain control characters")
            elif not request.pattern.startswith(prefix):
                v.add("pattern", f"must start with the cache namespace {prefix!r}")
            else:
                try:
                    parse_glob(request.pattern)
                except GlobError as exc:
                    v.add("pattern", f"is not a valid glob: {exc}")
        if len(request.tags) > MAX_TAGS:
            v.add("tags", f"at most {MAX_TAGS} tags per call")
        for i, tag in enumerate(request.tags[:MAX_TAGS]):
            if not tag.strip():
                v.add(f"tags[{i}]", "must not be empty")
            elif len(tag) > MAX_TAG_LENGTH:
                v.add(f"tags[{i}]", f"must be at most {MAX_TAG_LENGTH} characters")
            elif has_control_chars(tag):
                v.add(f"tags[{i}]", "must not contain control characters")
        v.raise_if_any()
        try:
            if request.pattern:
                deleted = await self.engine.invalidation.invalidate_pattern(request.pattern)
            else:
                deleted = await self.engine.invalidation.invalidate_tags(request.tags, "tags")
        except RedisUnavailable:
            raise Unavailable("Redis is unavailable: nothing was invalidated by the pattern") from None
        annotate(**{"cache.keys_deleted": deleted})
        return cache_pb2.InvalidateResponse(keys_deleted=deleted)

    async def InvalidateRelated(
        self,
        request: cache_pb2.InvalidateRelatedRequest,
        ctx: grpc.aio.ServicerContext[cache_pb2.InvalidateRelatedRequest, cache_pb2.InvalidateRelatedResponse],
    ) -> cache_pb2.InvalidateRelatedResponse:
        v = Violations()
        previous = check_city(v, "previous_city", request.previous_city) if request.previous_city else ""
        tags: set[str] = set()
        pid = 0
        if request.entity == cache_pb2.ENTITY_TYPE_PROPERTY:
            try:
                pid = int(request.id.strip(), 10)
                v.check(0 < pid < 2**63, "id", "must be a positive property id")
            except ValueError:
                v.add("id", "must be a decimal property id")
        elif request.entity == cache_pb2.ENTITY_TYPE_CITY:
            tags.add(city_tag(check_city(v, "id", request.id)))
        else:
            v.add("entity", "must be ENTITY_TYPE_PROPERTY or ENTITY_TYPE_CITY")
        v.raise_if_any()
        if request.entity == cache_pb2.ENTITY_TYPE_PROPERTY:
            row = await self.engine.db.fetchrow("SELECT city FROM properties WHERE id = $1", pid)
            if row is None and not previous:
                raise NotFound(f"property {pid} does not exist; pass previous_city to invalidate the city it was in")
            if row is not None:
                tags.add(city_tag(row["city"]))
        if previous:
            tags.add(city_tag(previous))
        tags |= {CITIES_TAG, TYPES_TAG}
        deleted = await self.engine.invalidation.invalidate_tags(tags, "related")
        annotate(**{"cache.keys_deleted": deleted})
        return cache_pb2.InvalidateRelatedResponse(keys_deleted=deleted, tags=sorted(tags))

    async def GetCacheStats(
        self,
        request: cache_pb2.GetCacheStatsRequest,
        ctx: grpc.aio.ServicerContext[cache_pb2.GetCacheStatsRequest, cache_pb2.GetCacheStatsResponse],
    ) -> cache_pb2.GetCacheStatsResponse:
        return await self.engine.report()

    # -- wiring -------------------------------------------------------------------------------

    def _query_handler(self, query: CachedQuery) -> grpc.RpcMethodHandler[bytes, bytes]:
        get = self.engine.reader.get
        resolve = RequestKeys(query, self.engine.keys, f"/{SERVICE_NAME}/{query.rpc}").resolve

        async def handle(raw: bytes, ctx: grpc.aio.ServicerContext[bytes, bytes]) -> bytes:
            params, key = resolve(raw)
            return await get(query, params, key)

        # neither (de)serializer: the handler takes the request's wire bytes (see requests.py) and returns
        # the response's (see entry.py)
        return grpc.unary_unary_rpc_method_handler(handle)

    def method_handlers(self) -> dict[str, grpc.RpcMethodHandler[Any, Any]]:
        # responses are bytes (cached queries, no serializer) or messages (the admin and stats RPCs)
        handlers: dict[str, grpc.RpcMethodHandler[Any, Any]] = {}
        for query in self.engine.queries.values():
            if query.rpc not in _SERVICE.methods_by_name:
                raise ValueError(f"query {query.name!r} names rpc {query.rpc!r}, which {SERVICE_NAME} does not have")
            if query.rpc in handlers:
                raise ValueError(f"two queries are served by rpc {query.rpc!r}")
            handlers[query.rpc] = self._query_handler(query)
        for name, request, response in (
            ("Invalidate", cache_pb2.InvalidateRequest, cache_pb2.InvalidateResponse),
            ("InvalidateRelated", cache_pb2.InvalidateRelatedRequest, cache_pb2.InvalidateRelatedResponse),
            ("GetCacheStats", cache_pb2.GetCacheStatsRequest, cache_pb2.GetCacheStatsResponse),
        ):
            handlers[name] = grpc.unary_unary_rpc_method_handler(
                getattr(self, name), request_deserializer=request.FromString, response_serializer=response.SerializeToString
            )
        missing = set(_SERVICE.methods_by_name) - set(handlers)
        if missing:
            raise ValueError(f"no handler for {', '.join(sorted(missing))}")
        return handlers

    def register(self, server: grpc.aio.Server) -> None:
        handlers = self.method_handlers()
        server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE_NAME, handlers),))
        server.add_registered_method_handlers(SERVICE_NAME, handlers)


def build(
    resources: Resources, settings: CacheSettings | None = None, queries: Mapping[str, CachedQuery] | None = None
) -> tuple[CacheQueryServicer, ServiceSpec]:
    """The servicer and its ServiceSpec; `settings` default to the environment, `queries` to the
    registry (tests pass their own, and use the servicer's engine to look inside)."""
    settings = settings or config.load(CacheSettings)
    engine = QueryCache(resources, settings, QUERIES if queries is None else queries)
    servicer = CacheQueryServicer(engine)
    spec = ServiceSpec(
        name=SERVICE_NAME,
        register=servicer.register,
        admin_methods=frozenset({"Invalidate", "InvalidateRelated"}),
        needs_redis=False,
        on_start=[engine.start],
        on_stop=[engine.stop],
    )
    return servicer, spec


def create(
    resources: Resources, settings: CacheSettings | None = None, queries: Mapping[str, CachedQuery] | None = None
) -> ServiceSpec:
    """The cache-query service. Readiness follows PostgreSQL only: without Redis it still answers."""
    return build(resources, settings, queries)[1]
