"""Request parameters ($1, $2 ...) bound to the statement, never interpolated into its text.

asyncpg encodes each value with the codec of the type PostgreSQL inferred for its placeholder and
insists on the matching Python type, so each value is converted to what its placeholder needs
(e.g. a string "42" for an int8 placeholder), and refused otherwise with the field `params[i]` named
(i from 0: params[0] is $1). An array placeholder (`id = ANY($1)`) takes PostgreSQL's array literal as
a string (`{1,2}`, `{"a b",NULL}`, nested `{{1,2},{3,4}}`), each element converted for the element type.
"""

from __future__ import annotations

import datetime as dt
import decimal
import uuid
from collections.abc import Sequence
from typing import Any

from rentscout.analyzer.v1 import analyzer_pb2
from rentscout.runtime.timestamps import to_datetime

_INTS = {"int2", "int4", "int8", "oid", "regclass", "regproc", "regtype", "xid"}
_FLOATS = {"float4", "float8"}
_TEXTS = {"text", "varchar", "bpchar", "name", "unknown", "citext", "json", "jsonb", "xml", "char"}


MAX_ARRAY_ELEMENTS = 100_000


class ParamError(ValueError):
    """A parameter cannot be used for its placeholder; the message says why, `field` which one."""

    def __init__(self, message: str, field: str = "params") -> None:
        super().__init__(message)
        self.field = field


def field_of(index: int) -> str:
    """The request field of the parameter at `index` (0-based; $1 is params[0])."""
    return f"params[{index}]"


def from_proto(params: Sequence[analyzer_pb2.QueryParam]) -> list[Any]:
    """QueryParam messages -> Python values (None for null or unset)."""
    values: list[Any] = []
    for i, p in enumerate(params, 1):
        kind = p.WhichOneof("value")
        if kind is None or kind == "null_value":
            values.append(None)
        elif kind == "timestamp_value":
            try:
                values.append(to_datetime(p.timestamp_value))
            except ValueError as exc:
                raise ParamError(f"${i}: timestamp_value {exc}", field_of(i - 1)) from None
        elif kind in ("string_value", "int_value", "double_value", "bool_value"):
            values.append(getattr(p, kind))
        else:  # a newer client sent a kind this server does not know
            raise ParamError(f"${i}: unsupported parameter kind {kind}", field_of(i - 1))
    return values


def _to_int(value: Any) -> int:
    if isinstance(value, bool):
        raise ParamError("a boolean is not an integer")
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        try:
            return int(value.strip())
        except ValueError:
            raise ParamError("is not an integer") from None
    raise ParamError("is not an integer")


def _to_float(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ParamError("is not a number")
    try:
        return float(value)
    except ValueError:
        raise ParamError("is not a number") from None


def _to_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "t", "yes", "on", "1", "false", "f", "no", "off", "0"):
        return value.strip().lower() in ("true", "t", "yes", "on", "1")
    raise ParamError("is not a boolean")


def _to_datetime(value: Any, aware: bool) -> dt.datetime:
    if isinstance(value, str):
        try:
            value = dt.datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        except ValueError:
            raise ParamError("is not an ISO 8601 timestamp") from None
    if not isinstance(value, dt.datetime):
        raise ParamError("is not a timestamp")
    if aware:
        return value if value.tzinfo else value.replace(tzinfo=dt.UTC)
    return value.astimezone(dt.UTC).replace(tzinfo=None) if value.tzinfo else value


def _to_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dt.datetime):
        return value.isoformat()
    return str(value)


def coerce(value: Any, type_name: str, kind: str, schema: str = "pg_catalog") -> Any:
    """`value` as the Python type asyncpg needs for a placeholder of PostgreSQL type `type_name`.

    Types outside pg_catalog (enums and other text-in/text-out user types) get the text form.
    """
    if value is None:
        return None
    if kind == "array":
        return _to_array(value, type_name, schema)
    if type_name in _INTS:
        return _to_int(value)
    if type_name in _FLOATS:
        return _to_float(value)
    if type_name == "numeric":
        try:
            return decimal.Decimal(_to_text(value))
        except decimal.InvalidOperation:
            raise ParamError("is not a number") from None
    if type_name == "bool":
        return _to_bool(value)
    if type_name in ("timestamptz", "timestamp"):
        return _to_datetime(value, aware=type_name == "timestamptz")
    if type_name == "date":
        if isinstance(value, dt.datetime):
            return value.date()
        try:
            return dt.date.fromisoformat(_to_text(value).strip())
        except ValueError:
            raise ParamError("is not an ISO 8601 date") from None
    if type_name == "uuid":
        try:
            return uuid.UUID(_to_text(value))
        except ValueError:
            raise ParamError("is not a UUID") from None
    if type_name in _TEXTS or (kind == "scalar" and schema != "pg_catalog"):
        return _to_text(value)
    raise ParamError(f"placeholder type {type_name} is not supported; cast through text, e.g. $n::text::{type_name}")


def _to_array(value: Any, type_name: str, schema: str) -> list[Any]:
    """A PostgreSQL array literal (a string) as nested lists, each element converted for the element type."""
    if not isinstance(value, str):
        raise ParamError("is not an array: pass PostgreSQL's array literal as a string, e.g. '{1,2}'")
    element = type_name[:-2] if type_name.endswith("[]") else type_name.removeprefix("_")
    parsed = parse_array(value)

    def convert(item: Any) -> Any:
        return None if item is None else coerce(item, element, "scalar", schema)

    # converted in place, level by level, without recursion
    stack: list[list[Any]] = [parsed]
    while stack:
        items = stack.pop()
        for i, item in enumerate(items):
            if isinstance(item, list):
                stack.append(item)
            else:
                try:
                    items[i] = convert(item)
                except ParamError as exc:
                    raise ParamError(f"has an element that {exc}") from None
    return parsed


def parse_array(text: str) -> list[Any]:
    """'{1,"a b",NULL,{2,3}}' -> ['1', 'a b', None, ['2', '3']] (elements stay text; NULL unquoted is None)."""
    body = text.strip()
    if not body.startswith("{"):
        raise ParamError("is not an array literal: it must start with '{', e.g. '{1,2}'")
    root: list[Any] = []
    stack: list[list[Any]] = []
    i, count, n = 0, 0, len(body)
    expect_item = True
    while i < n:
        char = body[i]
        if char == "{":
            if not expect_item:
                raise ParamError(f"is not a valid array literal (unexpected '{{' at {i + 1})")
            inner: list[Any] = [] if stack else root
            if stack:
                stack[-1].append(inner)
            stack.append(inner)
            i += 1
            continue
        if char.isspace():
            i += 1
            continue
        if not stack:
            raise ParamError(f"is not a valid array literal (text after the closing brace at {i + 1})")
        if char == "}":
            stack.pop()
            expect_item = False
            i += 1
            continue
        if char == ",":
            if expect_item:
                raise ParamError(f"is not a valid array literal (empty element at {i + 1})")
            expect_item = True
            i += 1
            continue
        if not expect_item:
            raise ParamError(f"is not a valid array literal (missing ',' at {i + 1})")
        if char == '"':
            i, quoted = _quoted(body, i + 1)
            stack[-1].append(quoted)
        else:
            end = i
            while end < n and body[end] not in ',{}"' and not body[end].isspace():
                end += 1
            word = body[i:end]
            stack[-1].append(None if word.upper() == "NULL" else word)
            i = end
        count += 1
        if count > MAX_ARRAY_ELEMENTS:
            raise ParamError(f"has more than {MAX_ARRAY_ELEMENTS} elements")
        expect_item = False
    if stack:
        raise ParamError("is not a valid array literal (a '{' is never closed)")
    return root


def _quoted(body: str, i: int) -> tuple[int, str]:
    out: list[str] = []
    while i < len(body):
        char = body[i]
        if char == "\\" and i + 1 < len(body):
            out.append(body[i + 1])
            i += 2
        elif char == '"':
            return i + 1, "".join(out)
        else:
            out.append(char)
            i += 1
    raise ParamError("is not a valid array literal (a quoted element is never closed)")


def bind(values: Sequence[Any], types: Sequence[tuple[str, str, str]]) -> list[Any]:
    """Convert every value for its placeholder ((type name, kind, schema) from the prepared statement)."""
    if len(values) != len(types):
        raise ParamError(f"the statement has {len(types)} placeholder(s) but {len(values)} parameter(s) were given")
    out = []
    for i, (value, (type_name, kind, schema)) in enumerate(zip(values, types, strict=True), 1):
        try:
            out.append(coerce(value, type_name, kind, schema))
        except ParamError as exc:
            raise ParamError(f"${i} ({type_name}) {exc}", field_of(i - 1)) from None
    return out
