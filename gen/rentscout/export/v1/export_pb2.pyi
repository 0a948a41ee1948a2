import datetime

from google.protobuf import duration_pb2 as _duration_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from rentscout.common.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ExportFormat(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    EXPORT_FORMAT_UNSPECIFIED: _ClassVar[ExportFormat]
    EXPORT_FORMAT_CSV: _ClassVar[ExportFormat]
    EXPORT_FORMAT_JSON: _ClassVar[ExportFormat]
    EXPORT_FORMAT_JSONL: _ClassVar[ExportFormat]
    EXPORT_FORMAT_ARROW: _ClassVar[ExportFormat]

class ExportStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    EXPORT_STATUS_UNSPECIFIED: _ClassVar[ExportStatus]
    EXPORT_STATUS_COMPLETED: _ClassVar[ExportStatus]
    EXPORT_STATUS_FAILED: _ClassVar[ExportStatus]
    EXPORT_STATUS_CANCELLED: _ClassVar[ExportStatus]
EXPORT_FORMAT_UNSPECIFIED: ExportFormat
EXPORT_FORMAT_CSV: ExportFormat
EXPORT_FORMAT_JSON: ExportFormat
EXPORT_FORMAT_JSONL: ExportFormat
EXPORT_FORMAT_ARROW: ExportFormat
EXPORT_STATUS_UNSPECIFIED: ExportStatus
EXPORT_STATUS_COMPLETED: ExportStatus
EXPORT_STATUS_FAILED: ExportStatus
EXPORT_STATUS_CANCELLED: ExportStatus

class ExportPropertiesRequest(_message.Message):
    __slots__ = ("format", "filter", "columns", "limit", "rows_per_chunk", "bytes_per_chunk", "resume_token")
    FORMAT_FIELD_NUMBER: _ClassVar[int]
    FILTER_FIELD_NUMBER: _ClassVar[int]
    COLUMNS_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    ROWS_PER_CHUNK_FIELD_NUMBER: _ClassVar[int]
    BYTES_PER_CHUNK_FIELD_NUMBER: _ClassVar[int]
    RESUME_TOKEN_FIELD_NUMBER: _ClassVar[int]
    format: ExportFormat
    filter: _common_pb2.PropertyFilter
    columns: _containers.RepeatedScalarFieldContainer[str]
    limit: int
    rows_per_chunk: int
    bytes_per_chunk: int
    resume_token: str
    def __init__(self, format: _Optional[_Union[ExportFormat, str]] = ..., filter: _Optional[_Union[_common_pb2.PropertyFilter, _Mapping]] = ..., columns: _Optional[_Iterable[str]] = ..., limit: _Optional[int] = ..., rows_per_chunk: _Optional[int] = ..., bytes_per_chunk: _Optional[int] = ..., resume_token: _Optional[str] = ...) -> None: ...

class ExportPropertiesResponse(_message.Message):
    __slots__ = ("header", "chunk", "summary")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    CHUNK_FIELD_NUMBER: _ClassVar[int]
    SUMMARY_FIELD_NUMBER: _ClassVar[int]
    header: ExportHeader
    chunk: ExportChunk
    summary: ExportSummary
    def __init__(self, header: _Optional[_Union[ExportHeader, _Mapping]] = ..., chunk: _Optional[_Union[ExportChunk, _Mapping]] = ..., summary: _Optional[_Union[ExportSummary, _Mapping]] = ...) -> None: ...

class ExportHeader(_message.Message):
    __slots__ = ("format", "columns", "estimated_total_rows", "export_id", "resumed", "rows_already_sent")
    FORMAT_FIELD_NUMBER: _ClassVar[int]
    COLUMNS_FIELD_NUMBER: _ClassVar[int]
    ESTIMATED_TOTAL_ROWS_FIELD_NUMBER: _ClassVar[int]
    EXPORT_ID_FIELD_NUMBER: _ClassVar[int]
    RESUMED_FIELD_NUMBER: _ClassVar[int]
    ROWS_ALREADY_SENT_FIELD_NUMBER: _ClassVar[int]
    format: ExportFormat
    columns: _containers.RepeatedScalarFieldContainer[str]
    estimated_total_rows: int
    export_id: str
    resumed: bool
    rows_already_sent: int
    def __init__(self, format: _Optional[_Union[ExportFormat, str]] = ..., columns: _Optional[_Iterable[str]] = ..., estimated_total_rows: _Optional[int] = ..., export_id: _Optional[str] = ..., resumed: _Optional[bool] = ..., rows_already_sent: _Optional[int] = ...) -> None: ...

class ExportChunk(_message.Message):
    __slots__ = ("data", "rows", "rows_sent", "resume_token")
    DATA_FIELD_NUMBER: _ClassVar[int]
    ROWS_FIELD_NUMBER: _ClassVar[int]
    ROWS_SENT_FIELD_NUMBER: _ClassVar[int]
    RESUME_TOKEN_FIELD_NUMBER: _ClassVar[int]
    data: bytes
    rows: int
    rows_sent: int
    resume_token: str
    def __init__(self, data: _Optional[bytes] = ..., rows: _Optional[int] = ..., rows_sent: _Optional[int] = ..., resume_token: _Optional[str] = ...) -> None: ...

class ExportSummary(_message.Message):
    __slots__ = ("rows", "bytes", "duration", "status", "export_id")
    ROWS_FIELD_NUMBER: _ClassVar[int]
    BYTES_FIELD_NUMBER: _ClassVar[int]
    DURATION_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    EXPORT_ID_FIELD_NUMBER: _ClassVar[int]
    rows: int
    bytes: int
    duration: _duration_pb2.Duration
    status: ExportStatus
    export_id: str
    def __init__(self, rows: _Optional[int] = ..., bytes: _Optional[int] = ..., duration: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., status: _Optional[_Union[ExportStatus, str]] = ..., export_id: _Optional[str] = ...) -> None: ...

class PlanExportRequest(_message.Message):
    __slots__ = ("export", "partitions")
    EXPORT_FIELD_NUMBER: _ClassVar[int]
    PARTITIONS_FIELD_NUMBER: _ClassVar[int]
    export: ExportPropertiesRequest
    partitions: int
    def __init__(self, export: _Optional[_Union[ExportPropertiesRequest, _Mapping]] = ..., partitions: _Optional[int] = ...) -> None: ...

class ExportPartition(_message.Message):
    __slots__ = ("index", "first_id", "last_id", "estimated_rows", "resume_token")
    INDEX_FIELD_NUMBER: _ClassVar[int]
    FIRST_ID_FIELD_NUMBER: _ClassVar[int]
    LAST_ID_FIELD_NUMBER: _ClassVar[int]
    ESTIMATED_ROWS_FIELD_NUMBER: _ClassVar[int]
    RESUME_TOKEN_FIELD_NUMBER: _ClassVar[int]
    index: int
    first_id: int
    last_id: int
    estimated_rows: int
    resume_token: str
    def __init__(self, index: _Optional[int] = ..., first_id: _Optional[int] = ..., last_id: _Optional[int] = ..., estimated_rows: _Optional[int] = ..., resume_token: _Optional[str] = ...) -> None: ...

class PlanExportResponse(_message.Message):
    __slots__ = ("partitions", "estimated_total_rows", "export_id")
    PARTITIONS_FIELD_NUMBER: _ClassVar[int]
    ESTIMATED_TOTAL_ROWS_FIELD_NUMBER: _ClassVar[int]
    EXPORT_ID_FIELD_NUMBER: _ClassVar[int]
    partitions: _containers.RepeatedCompositeFieldContainer[ExportPartition]
    estimated_total_rows: int
    export_id: str
    def __init__(self, partitions: _Optional[_Iterable[_Union[ExportPartition, _Mapping]]] = ..., estimated_total_rows: _Optional[int] = ..., export_id: _Optional[str] = ...) -> None: ...

class GetExportStatisticsRequest(_message.Message):
    __slots__ = ("since",)
    SINCE_FIELD_NUMBER: _ClassVar[int]
    since: _timestamp_pb2.Timestamp
    def __init__(self, since: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class FormatStatistics(_message.Message):
    __slots__ = ("format", "exports", "rows", "bytes", "mean_rows_per_second")
    FORMAT_FIELD_NUMBER: _ClassVar[int]
    EXPORTS_FIELD_NUMBER: _ClassVar[int]
    ROWS_FIELD_NUMBER: _ClassVar[int]
    BYTES_FIELD_NUMBER: _ClassVar[int]
    MEAN_ROWS_PER_SECOND_FIELD_NUMBER: _ClassVar[int]
    format: ExportFormat
    exports: int
    rows: int
    bytes: int
    mean_rows_per_second: float
    def __init__(self, format: _Optional[_Union[ExportFormat, str]] = ..., exports: _Optional[int] = ..., rows: _Optional[int] = ..., bytes: _Optional[int] = ..., mean_rows_per_second: _Optional[float] = ...) -> None: ...

class GetExportStatisticsResponse(_message.Message):
    __slots__ = ("exports_started", "exports_completed", "exports_failed", "exports_cancelled", "rows_exported", "bytes_exported", "exports_in_flight", "by_format", "exports_abandoned")
    EXPORTS_STARTED_FIELD_NUMBER: _ClassVar[int]
    EXPORTS_COMPLETED_FIELD_NUMBER: _ClassVar[int]
    EXPORTS_FAILED_FIELD_NUMBER: _ClassVar[int]
    EXPORTS_CANCELLED_FIELD_NUMBER: _ClassVar[int]
    ROWS_EXPORTED_FIELD_NUMBER: _ClassVar[int]
    BYTES_EXPORTED_FIELD_NUMBER: _ClassVar[int]
    EXPORTS_IN_FLIGHT_FIELD_NUMBER: _ClassVar[int]
    BY_FORMAT_FIELD_NUMBER: _ClassVar[int]
    EXPORTS_ABANDONED_FIELD_NUMBER: _ClassVar[int]
    exports_started: int
    exports_completed: int
    exports_failed: int
    exports_cancelled: int
    rows_exported: int
    bytes_exported: int
    exports_in_flight: int
    by_format: _containers.RepeatedCompositeFieldContainer[FormatStatistics]
    exports_abandoned: int
    def __init__(self, exports_started: _Optional[int] = ..., exports_completed: _Optional[int] = ..., exports_failed: _Optional[int] = ..., exports_cancelled: _Optional[int] = ..., rows_exported: _Optional[int] = ..., bytes_exported: _Optional[int] = ..., exports_in_flight: _Optional[int] = ..., by_format: _Optional[_Iterable[_Union[FormatStatistics, _Mapping]]] = ..., exports_abandoned: _Optional[int] = ...) -> None: ...
