"""Resume tokens: opaque, compact and tamper-evident (HMAC-SHA256, 128-bit tag).

A token binds the request fingerprint (format, filter, columns, limit), the export id, the keyset window
still to deliver (ids > after_id, <= upper_id) and the rows already delivered. Any replica holding the
same secret can resume it; a forged, truncated or mismatched token is INVALID_ARGUMENT on resume_token.

Keys: never derived from configuration a caller may know. With RENTSCOUT_EXPORT_TOKEN_SECRET set, the
key comes from it (every replica sharing it can resume every token); a second, previous secret
(RENTSCOUT_EXPORT_TOKEN_SECRET_PREVIOUS) still verifies tokens during a rotation, while new tokens are
signed with the current one. Without a secret (zero configuration) the keys live in PostgreSQL, table
token_signing_keys (migration 0009 creates the first; only the migrating role may read it): every replica
of the database verifies every token and a restart changes nothing. `rentscout db rotate-token-key`
adds a new current key and keeps the previous one for verification (`KeyRing` reloads when a token
carries a tag of a key it does not hold yet, and at most every KEY_REFRESH_SECONDS).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import hmac
import secrets
import struct
import time
from dataclasses import dataclass
from typing import Any, Protocol

from rentscout.runtime.errors import FailedPrecondition, InvalidArgument

VERSION = 2
# version, flags, fingerprint, export id, after, upper, rows sent (version 1 stops here), WAL position
_LAYOUTS = {1: struct.Struct(">BB16s16sqqq"), 2: struct.Struct(">BB16s16sqqqQ")}
_LAYOUT = _LAYOUTS[VERSION]
_TAG = 16
HAS_AFTER, HAS_UPPER, DONE = 1, 2, 4
FIELD = "resume_token"
MAX_TOKEN_LENGTH = 256
KEY_BYTES = 32
KEPT_KEYS = 2  # the current stored key and the one before it (still verifies after a rotation)
KEY_REFRESH_SECONDS = 60.0  # a replica signs with a rotated key at most this long after the rotation
RELOAD_ON_MISS_SECONDS = 1.0  # unknown tags reload the stored keys at most this often (forged-token floods)
STORED_KEYS_SQL = f"SELECT key FROM token_signing_keys ORDER BY key_id DESC LIMIT {KEPT_KEYS}"


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


class Fetcher(Protocol):
    """What reads the stored keys: a Database, or an asyncpg connection."""

    async def fetch(self, sql: str, *args: Any) -> list[Any]: ...


async def stored_keys(db: Fetcher) -> tuple[bytes, list[bytes]]:
    """(the key new tokens are signed with, every key a token may verify against), from PostgreSQL.

    The one lookup of the stored keys (Arrow Flight tickets use it too). FAILED_PRECONDITION when the
    table holds no key (the migrations were not applied); the key bytes never reach a log or an error."""
    rows = await db.fetch(STORED_KEYS_SQL)
    keys = [bytes(r["key"]) for r in rows]
    if not keys:
        raise FailedPrecondition(
            "no resume-token signing key is stored in PostgreSQL: run `rentscout db migrate` "
            "(or set RENTSCOUT_EXPORT_TOKEN_SECRET)"
        )
    return keys[0], keys


async def rotate_stored_key(conn: Any) -> int:
    """Store a new current key, keep the previous one for verification, delete older ones; returns the new
    key's id. `conn`: an asyncpg connection of the migrating role (one transaction, rotations serialized)."""
    async with conn.transaction():
        await conn.execute("LOCK TABLE token_signing_keys IN SHARE ROW EXCLUSIVE MODE")
        key_id: int = await conn.fetchval(
            "INSERT INTO token_signing_keys (key) VALUES ($1) RETURNING key_id", secrets.token_bytes(KEY_BYTES)
        )
        await conn.execute(
            "DELETE FROM token_signing_keys WHERE key_id NOT IN "
            f"(SELECT key_id FROM token_signing_keys ORDER BY key_id DESC LIMIT {KEPT_KEYS})"
        )
    return key_id


class UnknownKey(InvalidArgument):
    """The token's tag matches no key this codec holds (forged, corrupted, or signed with a newer key)."""


class TokenCodec:
    def __init__(self, secret: bytes, verify: list[bytes] | None = None) -> None:
        """`secret` signs; `verify` (default: just `secret`) are the keys a token may carry a tag of."""
        self._secret = secret
        self._verify = list(verify) if verify else [secret]

    def _tag(self, payload: bytes, key: bytes | None = None) -> bytes:
        return hmac.new(self._secret if key is None else key, payload, hashlib.sha256).digest()[:_TAG]

    def encode(self, fingerprint: bytes, state: ResumeState) -> str:
        flags = (
            (HAS_AFTER if state.after_id is not None else 0)
            | (HAS_UPPER if state.upper_id is not None else 0)
            | (DONE if state.done else 0)
        )
        payload = _LAYOUT.pack(
            VERSION, flags, fingerprint, state.export_id, state.after_id or 0, state.upper_id or 0, state.rows_sent, state.lsn
        )
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
        payload, tag = raw[: layout.size], raw[layout.size :]
        if not any(hmac.compare_digest(tag, self._tag(payload, key)) for key in self._verify):
            raise UnknownKey(FIELD, "is forged, corrupted or from a server with another secret")
        version, flags, fp, export_id, after, upper, rows_sent, *rest = layout.unpack(payload)
        if _LAYOUTS.get(version) is not layout:
            raise InvalidArgument(FIELD, f"has unsupported version {version}")
        if not hmac.compare_digest(fp, fingerprint):
            raise InvalidArgument(FIELD, "does not match this request's format, filter, columns and limit")
        if rows_sent < 0:
            raise InvalidArgument(FIELD, "is malformed (negative row count)")
        return ResumeState(
            export_id=export_id,
            after_id=after if flags & HAS_AFTER else None,
            upper_id=upper if flags & HAS_UPPER else None,
            rows_sent=rows_sent,
            done=bool(flags & DONE),
            lsn=rest[0] if rest else 0,
        )


class KeyRing:
    """The codec of a service: from the configured secret (fixed), or from the keys stored in PostgreSQL
    (loaded at start, refreshed every KEY_REFRESH_SECONDS, and reloaded when a token carries an unknown tag)."""

    def __init__(self, db: Fetcher, secret: str = "", previous: str = "") -> None:
        self._db = db
        self.stored = not secret
        self._codec = None if self.stored else TokenCodec(*signing_keys(secret, previous))
        self._loaded_at = self._miss_at = -1e9
        self._lock = asyncio.Lock()

    async def _load(self) -> TokenCodec:
        async with self._lock:
            self._codec = TokenCodec(*await stored_keys(self._db))
            self._loaded_at = time.monotonic()
            return self._codec

    async def codec(self) -> TokenCodec:
        """The codec to sign and verify with now."""
        if self._codec is not None and (not self.stored or time.monotonic() - self._loaded_at < KEY_REFRESH_SECONDS):
            return self._codec
        return await self._load()

    @property
    def current(self) -> TokenCodec:
        """The codec last loaded (for code that cannot await); FAILED_PRECONDITION before the first load."""
        if self._codec is None:
            raise FailedPrecondition("the resume-token keys are not loaded yet")
        return self._codec

    async def decode(self, token: str, fingerprint: bytes) -> ResumeState:
        codec = await self.codec()
        try:
            return codec.decode(token, fingerprint)
        except UnknownKey:
            now = time.monotonic()
            if not self.stored or now - self._miss_at < RELOAD_ON_MISS_SECONDS:
                raise
            self._miss_at = now  # perhaps rotated since the last load: look once more
            return (await self._load()).decode(token, fingerprint)
