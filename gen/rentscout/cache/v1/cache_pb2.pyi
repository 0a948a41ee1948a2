import datetime

from google.protobuf import duration_pb2 as _duration_pb2
from rentscout.common.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class CacheSource(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    CACHE_SOURCE_UNSPECIFIED: _ClassVar[CacheSource]
    CACHE_SOURCE_NEAR: _ClassVar[CacheSource]
    CACHE_SOURCE_REDIS: _ClassVar[CacheSource]
    CACHE_SOURCE_DATABASE: _ClassVar[CacheSource]
    CACHE_SOURCE_STALE: _ClassVar[CacheSource]

class BreakerState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    BREAKER_STATE_UNSPECIFIED: _ClassVar[BreakerState]
    BREAKER_STATE_CLOSED: _ClassVar[BreakerState]
    BREAKER_STATE_OPEN: _ClassVar[BreakerState]
    BREAKER_STATE_HALF_OPEN: _ClassVar[BreakerState]

class EntityType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ENTITY_TYPE_UNSPECIFIED: _ClassVar[EntityType]
    ENTITY_TYPE_PROPERTY: _ClassVar[EntityType]
    ENTITY_TYPE_CITY: _ClassVar[EntityType]
CACHE_SOURCE_UNSPECIFIED: CacheSource
CACHE_SOURCE_NEAR: CacheSource
CACHE_SOURCE_REDIS: CacheSource
CACHE_SOURCE_DATABASE: CacheSource
CACHE_SOURCE_STALE: CacheSource
BREAKER_STATE_UNSPECIFIED: BreakerState
BREAKER_STATE_CLOSED: BreakerState
BREAKER_STATE_OPEN: BreakerState
BREAKER_STATE_HALF_OPEN: BreakerState
ENTITY_TYPE_UNSPECIFIED: EntityType
ENTITY_TYPE_PROPERTY: EntityType
ENTITY_TYPE_CITY: EntityType

class CacheInfo(_message.Message):
    __slots__ = ("hit", "key", "age", "ttl", "source")
    HIT_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    AGE_FIELD_NUMBER: _ClassVar[int]
    TTL_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    hit: bool
    key: str
    age: _duration_pb2.Duration
    ttl: _duration_pb2.Duration
    source: CacheSource
    def __init__(self, hit: _Optional[bool] = ..., key: _Optional[str] = ..., age: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., ttl: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., source: _Optional[_Union[CacheSource, str]] = ...) -> None: ...

class PopularPropertiesRequest(_message.Message):
    __slots__ = ("city", "limit")
    CITY_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    city: str
    limit: int
    def __init__(self, city: _Optional[str] = ..., limit: _Optional[int] = ...) -> None: ...

class PopularPropertiesResponse(_message.Message):
    __slots__ = ("properties", "cache")
    PROPERTIES_FIELD_NUMBER: _ClassVar[int]
    CACHE_FIELD_NUMBER: _ClassVar[int]
    properties: _containers.RepeatedCompositeFieldContainer[_common_pb2.Property]
    cache: CacheInfo
    def __init__(self, properties: _Optional[_Iterable[_Union[_common_pb2.Property, _Mapping]]] = ..., cache: _Optional[_Union[CacheInfo, _Mapping]] = ...) -> None: ...

class PriceStatsRequest(_message.Message):
    __slots__ = ("city", "property_type")
    CITY_FIELD_NUMBER: _ClassVar[int]
    PROPERTY_TYPE_FIELD_NUMBER: _ClassVar[int]
    city: str
    property_type: _common_pb2.PropertyType
    def __init__(self, city: _Optional[str] = ..., property_type: _Optional[_Union[_common_pb2.PropertyType, str]] = ...) -> None: ...

class PriceStatsResponse(_message.Message):
    __slots__ = ("count", "min", "max", "mean", "median", "p25", "p75", "mean_price_per_sqm", "cache")
    COUNT_FIELD_NUMBER: _ClassVar[int]
    MIN_FIELD_NUMBER: _ClassVar[int]
    MAX_FIELD_NUMBER: _ClassVar[int]
    MEAN_FIELD_NUMBER: _ClassVar[int]
    MEDIAN_FIELD_NUMBER: _ClassVar[int]
    P25_FIELD_NUMBER: _ClassVar[int]
    P75_FIELD_NUMBER: _ClassVar[int]
    MEAN_PRICE_PER_SQM_FIELD_NUMBER: _ClassVar[int]
    CACHE_FIELD_NUMBER: _ClassVar[int]
    count: int
    min: float
    max: float
    mean: float
    median: float
    p25: float
    p75: float
    mean_price_per_sqm: float
    cache: CacheInfo
    def __init__(self, count: _Optional[int] = ..., min: _Optional[float] = ..., max: _Optional[float] = ..., mean: _Optional[float] = ..., median: _Optional[float] = ..., p25: _Optional[float] = ..., p75: _Optional[float] = ..., mean_price_per_sqm: _Optional[float] = ..., cache: _Optional[_Union[CacheInfo, _Mapping]] = ...) -> None: ...

class CitiesRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class CityCount(_message.Message):
    __slots__ = ("city", "count")
    CITY_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    city: str
    count: int
    def __init__(self, city: _Optional[str] = ..., count: _Optional[int] = ...) -> None: ...

class CitiesResponse(_message.Message):
    __slots__ = ("cities", "cache")
    CITIES_FIELD_NUMBER: _ClassVar[int]
    CACHE_FIELD_NUMBER: _ClassVar[int]
    cities: _containers.RepeatedCompositeFieldContainer[CityCount]
    cache: CacheInfo
    def __init__(self, cities: _Optional[_Iterable[_Union[CityCount, _Mapping]]] = ..., cache: _Optional[_Union[CacheInfo, _Mapping]] = ...) -> None: ...

class PropertyTypesRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class PropertyTypeCount(_message.Message):
    __slots__ = ("property_type", "count")
    PROPERTY_TYPE_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    property_type: _common_pb2.PropertyType
    count: int
    def __init__(self, property_type: _Optional[_Union[_common_pb2.PropertyType, str]] = ..., count: _Optional[int] = ...) -> None: ...

class PropertyTypesResponse(_message.Message):
    __slots__ = ("property_types", "cache")
    PROPERTY_TYPES_FIELD_NUMBER: _ClassVar[int]
    CACHE_FIELD_NUMBER: _ClassVar[int]
    property_types: _containers.RepeatedCompositeFieldContainer[PropertyTypeCount]
    cache: CacheInfo
    def __init__(self, property_types: _Optional[_Iterable[_Union[PropertyTypeCount, _Mapping]]] = ..., cache: _Optional[_Union[CacheInfo, _Mapping]] = ...) -> None: ...

class InvalidateRequest(_message.Message):
    __slots__ = ("pattern", "tags")
    PATTERN_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    pattern: str
    tags: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, pattern: _Optional[str] = ..., tags: _Optional[_Iterable[str]] = ...) -> None: ...

class InvalidateResponse(_message.Message):
    __slots__ = ("keys_deleted",)
    KEYS_DELETED_FIELD_NUMBER: _ClassVar[int]
    keys_deleted: int
    def __init__(self, keys_deleted: _Optional[int] = ...) -> None: ...

class InvalidateRelatedRequest(_message.Message):
    __slots__ = ("entity", "id", "previous_city")
    ENTITY_FIELD_NUMBER: _ClassVar[int]
    ID_FIELD_NUMBER: _ClassVar[int]
    PREVIOUS_CITY_FIELD_NUMBER: _ClassVar[int]
    entity: EntityType
    id: str
    previous_city: str
    def __init__(self, entity: _Optional[_Union[EntityType, str]] = ..., id: _Optional[str] = ..., previous_city: _Optional[str] = ...) -> None: ...

class InvalidateRelatedResponse(_message.Message):
    __slots__ = ("keys_deleted", "tags")
    KEYS_DELETED_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    keys_deleted: int
    tags: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, keys_deleted: _Optional[int] = ..., tags: _Optional[_Iterable[str]] = ...) -> None: ...

class GetCacheStatsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class QueryTypeStats(_message.Message):
    __slots__ = ("query_type", "hits", "misses", "hit_ratio")
    QUERY_TYPE_FIELD_NUMBER: _ClassVar[int]
    HITS_FIELD_NUMBER: _ClassVar[int]
    MISSES_FIELD_NUMBER: _ClassVar[int]
    HIT_RATIO_FIELD_NUMBER: _ClassVar[int]
    query_type: str
    hits: int
    misses: int
    hit_ratio: float
    def __init__(self, query_type: _Optional[str] = ..., hits: _Optional[int] = ..., misses: _Optional[int] = ..., hit_ratio: _Optional[float] = ...) -> None: ...

class GetCacheStatsResponse(_message.Message):
    __slots__ = ("by_query_type", "hits", "misses", "hit_ratio", "stampedes_prevented", "invalidations", "redis_keys", "redis_memory_bytes", "breaker_state", "near_cache_entries")
    BY_QUERY_TYPE_FIELD_NUMBER: _ClassVar[int]
    HITS_FIELD_NUMBER: _ClassVar[int]
    MISSES_FIELD_NUMBER: _ClassVar[int]
    HIT_RATIO_FIELD_NUMBER: _ClassVar[int]
    STAMPEDES_PREVENTED_FIELD_NUMBER: _ClassVar[int]
    INVALIDATIONS_FIELD_NUMBER: _ClassVar[int]
    REDIS_KEYS_FIELD_NUMBER: _ClassVar[int]
    REDIS_MEMORY_BYTES_FIELD_NUMBER: _ClassVar[int]
    BREAKER_STATE_FIELD_NUMBER: _ClassVar[int]
    NEAR_CACHE_ENTRIES_FIELD_NUMBER: _ClassVar[int]
    by_query_type: _containers.RepeatedCompositeFieldContainer[QueryTypeStats]
    hits: int
    misses: int
    hit_ratio: float
    stampedes_prevented: int
    invalidations: int
    redis_keys: int
    redis_memory_bytes: int
    breaker_state: BreakerState
    near_cache_entries: int
    def __init__(self, by_query_type: _Optional[_Iterable[_Union[QueryTypeStats, _Mapping]]] = ..., hits: _Optional[int] = ..., misses: _Optional[int] = ..., hit_ratio: _Optional[float] = ..., stampedes_prevented: _Optional[int] = ..., invalidations: _Optional[int] = ..., redis_keys: _Optional[int] = ..., redis_memory_bytes: _Optional[int] = ..., breaker_state: _Optional[_Union[BreakerState, str]] = ..., near_cache_entries: _Optional[int] = ...) -> None: ...
