"""Resume tokens: opaque, compact and tamper-evident (HMAC-SHA256, 128-bit tag).

A token binds the request fingerprint (format, filter, columns, limit), the export id, the keyset window
still to deliver (ids > after_id, <= upper_id) and the rows already delivered. Any replica holding the
same secret can resume it; a forged, truncated or mismatched token is INVALID_ARGUMENT on resume_token.

Keys: never derived from configuration a caller may know. With RENTSCOUT_EXPORT_TOKEN_SECRET set, the
key comes from it (every replica sharing it can resume every token); a second, previous secret
(RENTSCOUT_EXPORT_TOKEN_SECRET_PREVIOUS) still verifies tokens during a rotation, while new tokens are
signed with the current one. Without a secret the key is random per process: resume works on the
replica that minted the token only, and the service logs a warning at start.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
import struct
from dataclasses import dataclass

from rentscout.runtime.errors import InvalidArgument

VERSION = 2
# version, flags, fingerprint, export id, after, upper, rows sent (version 1 stops here), WAL position
_LAYOUTS = {1: struct.Struct(">BB16s16sqqq"), 2: struct.Struct(">BB16s16sqqqQ")}
_LAYOUT = _LAYOUTS[VERSION]
_TAG = 16
HAS_AFTER, HAS_UPPER, DONE = 1, 2, 4
FIELD = "resume_token"
MAX_TOKEN_LENGTH = 256


@dataclass(frozen=True)
class ResumeState:
    export_id: bytes  # 16 bytes (a UUID)
    after_id: int | None  # deliver ids strictly greater than this (None: from the start)
    upper_id: int | None  # ... and at most this (None: to the end)
    rows_sent: int  # rows delivered by earlier streams of this export (or partition)
    done: bool = False  # everything, closing bytes included, was delivered
    # WAL position of the node the stream read (0: unknown): a resumed stream reads a node that has
    # replayed at least this far, so no row the earlier stream would have delivered is missing
    lsn: int = 0


def key_from_secret(configured: str) -> bytes:
    """The HMAC key of a configured secret."""
    return hashlib.sha256(b"rentscout-export-token\0" + configured.encode()).digest()


def signing_keys(current: str, previous: str = "") -> tuple[bytes, list[bytes]]:
    """(the key new tokens are signed with, every key a token may verify against, current first).

    Without a current secret: a random key of this process (a previous secret alone is ignored: it
    could only verify tokens that no replica would sign any more)."""
    if not current:
        key = secrets.token_bytes(32)
        return key, [key]
    keys = [key_from_secret(current)]
    if previous and previous != current:
        keys.append(key_from_secret(previous))
    return keys[0], keys


class TokenCodec:
    def __init__(self, secret: bytes, verify: list[bytes] | None = None) -> None:
        """`secret` signs; `verify` (default: just `secret`) are the keys a token may carry a tag of."""
        self._secret = secret
        self._verify = list(verify) if verify else [secret]

    def _tag(self, payload: bytes, key: bytes | None = None) -> bytes:
        return hmac.new(self._secret if key is None else key, payload, hashlib.sha256).digest()[:_TAG]

    def encode(self, fingerprint: bytes, state: ResumeState) -> str:
        flags = ((HAS_AFTER if state.after_id is not None else 0) | (HAS_UPPER if state.upper_id is not None else 0)
                 | (DONE if state.done else 0))
        payload = _LAYOUT.pack(VERSION, flags, fingerprint, state.export_id, state.after_id or 0,
                               state.upper_id or 0, state.rows_sent, state.lsn)
        return base64.urlsafe_b64encode(payload + self._tag(payload)).rstrip(b"=").decode()

    def decode(self, token: str, fingerprint: bytes) -> ResumeState:
        """The state in `token`, verified against this key and this request's fingerprint."""
        if len(token) > MAX_TOKEN_LENGTH:
            raise InvalidArgument(FIELD, "is malformed (too long)")
        try:
            raw = base64.b64decode(token + "=" * (-len(token) % 4), altchars=b"-_", validate=True)
        except (binascii.Error, ValueError):
            raise InvalidArgument(FIELD, "is malformed (not base64url)") from None
        if base64.urlsafe_b64encode(raw).rstrip(b"=").decode() != token:  # one spelling per token
            raise InvalidArgument(FIELD, "is malformed (not canonical base64url)")
        layout = next((lay for lay in _LAYOUTS.values() if len(raw) == lay.size + _TAG), None)
        if layout is None:
            raise InvalidArgument(FIELD, "is malformed (wrong length)")
        payload, tag = raw[:layout.size], raw[layout.size:]
        if not any(hmac.compare_digest(tag, self._tag(payload, key)) for key in self._verify):
            raise InvalidArgument(FIELD, "is forged, corrupted or from a server with another secret")
        version, flags, fp, export_id, after, upper, rows_sent, *rest = layout.unpack(payload)
        if _LAYOUTS.get(version) is not layout:
            raise InvalidArgument(FIELD, f"has unsupported version {version}")
        if not hmac.compare_digest(fp, fingerprint):
            raise InvalidArgument(FIELD, "does not match this request's format, filter, columns and limit")
        if rows_sent < 0:
            raise InvalidArgument(FIELD, "is malformed (negative row count)")
        return ResumeState(export_id=export_id, after_id=after if flags & HAS_AFTER else None,
                           upper_id=upper if flags & HAS_UPPER else None, rows_sent=rows_sent, done=bool(flags & DONE),
                           lsn=rest[0] if rest else 0)
