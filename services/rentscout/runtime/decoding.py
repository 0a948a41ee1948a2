"""Request bytes to a message without raising: an undecodable request becomes a marker that turns into
INVALID_ARGUMENT naming the message type, never UNKNOWN or a traceback.

The interceptor wraps every handler's deserializer with it; a service that decodes request bytes itself
(the cache service's request memo) uses the same helper, so both answer a bad request alike.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from google.protobuf.message import DecodeError

from rentscout.runtime.errors import InvalidArgument


@dataclass(frozen=True)
class Undecodable:
    """Stands for a request message whose bytes could not be decoded."""

    type_name: str
    reason: str = "malformed protobuf, or a string field that is not valid UTF-8"

    def error(self) -> InvalidArgument:
        return InvalidArgument("request", f"cannot be decoded as a {self.type_name} message ({self.reason})")


def _type_name(deserializer: Any, method: str) -> str:
    message_class = getattr(deserializer, "__self__", None)  # Message.FromString is a classmethod
    descriptor = getattr(message_class, "DESCRIPTOR", None)
    return str(getattr(descriptor, "full_name", "")) or f"request of {method}"


def safe_deserializer(deserializer: Callable[[bytes], Any] | None, method: str) -> Callable[[bytes], Any] | None:
    """`deserializer` that returns an Undecodable marker instead of raising."""
    if deserializer is None:
        return None
    type_name = _type_name(deserializer, method)

    def deserialize(data: bytes) -> Any:
        try:
            return deserializer(data)
        except DecodeError as exc:  # "Error parsing message with type 'x': String field had bad UTF-8"
            reason = str(exc).rpartition("': ")[2].strip()
            return Undecodable(type_name, reason[:200]) if reason and "<" not in reason else Undecodable(type_name)
        except Exception:  # anything a custom deserializer raises: its text is not the caller's business
            return Undecodable(type_name)

    return deserialize
