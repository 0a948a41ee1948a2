import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ListingSource(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    LISTING_SOURCE_UNSPECIFIED: _ClassVar[ListingSource]
    LISTING_SOURCE_AVITO: _ClassVar[ListingSource]
    LISTING_SOURCE_CIAN: _ClassVar[ListingSource]
    LISTING_SOURCE_DOMCLICK: _ClassVar[ListingSource]
    LISTING_SOURCE_YANDEX: _ClassVar[ListingSource]

class PropertyType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    PROPERTY_TYPE_UNSPECIFIED: _ClassVar[PropertyType]
    PROPERTY_TYPE_APARTMENT: _ClassVar[PropertyType]
    PROPERTY_TYPE_ROOM: _ClassVar[PropertyType]
    PROPERTY_TYPE_STUDIO: _ClassVar[PropertyType]
    PROPERTY_TYPE_HOUSE: _ClassVar[PropertyType]
    PROPERTY_TYPE_TOWNHOUSE: _ClassVar[PropertyType]
    PROPERTY_TYPE_COMMERCIAL: _ClassVar[PropertyType]

class Severity(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SEVERITY_UNSPECIFIED: _ClassVar[Severity]
    SEVERITY_INFO: _ClassVar[Severity]
    SEVERITY_WARNING: _ClassVar[Severity]
    SEVERITY_CRITICAL: _ClassVar[Severity]

class Infinity(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    INFINITY_UNSPECIFIED: _ClassVar[Infinity]
    INFINITY_NEGATIVE: _ClassVar[Infinity]
    INFINITY_POSITIVE: _ClassVar[Infinity]
LISTING_SOURCE_UNSPECIFIED: ListingSource
LISTING_SOURCE_AVITO: ListingSource
LISTING_SOURCE_CIAN: ListingSource
LISTING_SOURCE_DOMCLICK: ListingSource
LISTING_SOURCE_YANDEX: ListingSource
PROPERTY_TYPE_UNSPECIFIED: PropertyType
PROPERTY_TYPE_APARTMENT: PropertyType
PROPERTY_TYPE_ROOM: PropertyType
PROPERTY_TYPE_STUDIO: PropertyType
PROPERTY_TYPE_HOUSE: PropertyType
PROPERTY_TYPE_TOWNHOUSE: PropertyType
PROPERTY_TYPE_COMMERCIAL: PropertyType
SEVERITY_UNSPECIFIED: Severity
SEVERITY_INFO: Severity
SEVERITY_WARNING: Severity
SEVERITY_CRITICAL: Severity
INFINITY_UNSPECIFIED: Infinity
INFINITY_NEGATIVE: Infinity
INFINITY_POSITIVE: Infinity

class OutOfRangeTime(_message.Message):
    __slots__ = ("infinity", "seconds", "nanos")
    INFINITY_FIELD_NUMBER: _ClassVar[int]
    SECONDS_FIELD_NUMBER: _ClassVar[int]
    NANOS_FIELD_NUMBER: _ClassVar[int]
    infinity: Infinity
    seconds: int
    nanos: int
    def __init__(self, infinity: _Optional[_Union[Infinity, str]] = ..., seconds: _Optional[int] = ..., nanos: _Optional[int] = ...) -> None: ...

class Property(_message.Message):
    __slots__ = ("id", "source", "external_id", "title", "city", "district", "address", "property_type", "price", "currency", "rooms", "area", "floor", "lat", "lon", "url", "views", "is_active", "created_at", "updated_at", "created_at_out_of_range", "updated_at_out_of_range")
    ID_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    EXTERNAL_ID_FIELD_NUMBER: _ClassVar[int]
    TITLE_FIELD_NUMBER: _ClassVar[int]
    CITY_FIELD_NUMBER: _ClassVar[int]
    DISTRICT_FIELD_NUMBER: _ClassVar[int]
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    PROPERTY_TYPE_FIELD_NUMBER: _ClassVar[int]
    PRICE_FIELD_NUMBER: _ClassVar[int]
    CURRENCY_FIELD_NUMBER: _ClassVar[int]
    ROOMS_FIELD_NUMBER: _ClassVar[int]
    AREA_FIELD_NUMBER: _ClassVar[int]
    FLOOR_FIELD_NUMBER: _ClassVar[int]
    LAT_FIELD_NUMBER: _ClassVar[int]
    LON_FIELD_NUMBER: _ClassVar[int]
    URL_FIELD_NUMBER: _ClassVar[int]
    VIEWS_FIELD_NUMBER: _ClassVar[int]
    IS_ACTIVE_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_OUT_OF_RANGE_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_OUT_OF_RANGE_FIELD_NUMBER: _ClassVar[int]
    id: int
    source: ListingSource
    external_id: str
    title: str
    city: str
    district: str
    address: str
    property_type: PropertyType
    price: int
    currency: str
    rooms: int
    area: float
    floor: int
    lat: float
    lon: float
    url: str
    views: int
    is_active: bool
    created_at: _timestamp_pb2.Timestamp
    updated_at: _timestamp_pb2.Timestamp
    created_at_out_of_range: OutOfRangeTime
    updated_at_out_of_range: OutOfRangeTime
    def __init__(self, id: _Optional[int] = ..., source: _Optional[_Union[ListingSource, str]] = ..., external_id: _Optional[str] = ..., title: _Optional[str] = ..., city: _Optional[str] = ..., district: _Optional[str] = ..., address: _Optional[str] = ..., property_type: _Optional[_Union[PropertyType, str]] = ..., price: _Optional[int] = ..., currency: _Optional[str] = ..., rooms: _Optional[int] = ..., area: _Optional[float] = ..., floor: _Optional[int] = ..., lat: _Optional[float] = ..., lon: _Optional[float] = ..., url: _Optional[str] = ..., views: _Optional[int] = ..., is_active: _Optional[bool] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., updated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., created_at_out_of_range: _Optional[_Union[OutOfRangeTime, _Mapping]] = ..., updated_at_out_of_range: _Optional[_Union[OutOfRangeTime, _Mapping]] = ...) -> None: ...

class PropertyFilter(_message.Message):
    __slots__ = ("cities", "property_types", "min_price", "max_price", "min_rooms", "max_rooms", "active_only", "updated_since", "sources")
    CITIES_FIELD_NUMBER: _ClassVar[int]
    PROPERTY_TYPES_FIELD_NUMBER: _ClassVar[int]
    MIN_PRICE_FIELD_NUMBER: _ClassVar[int]
    MAX_PRICE_FIELD_NUMBER: _ClassVar[int]
    MIN_ROOMS_FIELD_NUMBER: _ClassVar[int]
    MAX_ROOMS_FIELD_NUMBER: _ClassVar[int]
    ACTIVE_ONLY_FIELD_NUMBER: _ClassVar[int]
    UPDATED_SINCE_FIELD_NUMBER: _ClassVar[int]
    SOURCES_FIELD_NUMBER: _ClassVar[int]
    cities: _containers.RepeatedScalarFieldContainer[str]
    property_types: _containers.RepeatedScalarFieldContainer[PropertyType]
    min_price: int
    max_price: int
    min_rooms: int
    max_rooms: int
    active_only: bool
    updated_since: _timestamp_pb2.Timestamp
    sources: _containers.RepeatedScalarFieldContainer[ListingSource]
    def __init__(self, cities: _Optional[_Iterable[str]] = ..., property_types: _Optional[_Iterable[_Union[PropertyType, str]]] = ..., min_price: _Optional[int] = ..., max_price: _Optional[int] = ..., min_rooms: _Optional[int] = ..., max_rooms: _Optional[int] = ..., active_only: _Optional[bool] = ..., updated_since: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., sources: _Optional[_Iterable[_Union[ListingSource, str]]] = ...) -> None: ...
