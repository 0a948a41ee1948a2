"""Bearer-token authentication mapped to roles (reader < admin)."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass, field
from pathlib import Path

from rentscout.runtime.config import ConfigError
from rentscout.runtime.context import Principal
from rentscout.runtime.errors import PermissionDenied, Unauthenticated

READER, ADMIN = "reader", "admin"
ROLE_RANK = {READER: 1, ADMIN: 2}


def parse_tokens(spec: str, source: str) -> dict[str, str]:
    """`tok1:admin,tok2:reader` (or one pair per line) -> {token: role}."""
    tokens: dict[str, str] = {}
    uncommented = ",".join(line.split("#", 1)[0] for line in spec.splitlines())  # a comment may hold commas
    for n, item in enumerate(uncommented.split(","), 1):
        item = item.strip()
        if not item:
            continue
        token, sep, role = item.rpartition(":")
        token, role = token.strip(), role.strip().lower()
        if not sep or not token:
            raise ConfigError(f"{source}: entry {n} is not `token:role`")
        if role not in ROLE_RANK:
            raise ConfigError(f"{source}: entry {n} has unknown role {role!r} (expected reader or admin)")
        if len(token) < 8:
            raise ConfigError(f"{source}: entry {n} has a token shorter than 8 characters")
        tokens[token] = role
    return tokens


def new_token() -> str:
    """A fresh bearer token (192 random bits) in hex: it is pasted after `--token` in shells and argparse,
    where a token_urlsafe one that happened to begin with "-" (1 in 64) read as an option."""
    return secrets.token_hex(24)


def load_tokens(inline: str, file: str) -> dict[str, str]:
    tokens = parse_tokens(inline, "RENTSCOUT_AUTH_TOKENS")
    if file:
        try:
            text = Path(file).read_text()
        except OSError as exc:
            raise ConfigError(f"RENTSCOUT_AUTH_TOKENS_FILE: cannot read {file}: {exc.strerror}") from None
        tokens.update(parse_tokens(text, "RENTSCOUT_AUTH_TOKENS_FILE"))
    return tokens


def token_label(token: str) -> str:
    """A non-secret label for logs: the first 8 hex digits of the token's SHA-256."""
    return "tok-" + hashlib.sha256(token.encode()).hexdigest()[:8]


ANONYMOUS = Principal(role=ADMIN, name="anonymous (auth disabled)")


@dataclass
class Authenticator:
    tokens: dict[str, str]
    _principals: dict[str, Principal] = field(default_factory=dict, init=False, repr=False)  # by known token

    @property
    def enabled(self) -> bool:
        return bool(self.tokens)

    def _principal(self, known: str, role: str) -> Principal:
        found = self._principals.get(known)
        if found is None or found.role != role:
            found = self._principals[known] = Principal(role=role, name=token_label(known))
        return found

    def authenticate(self, authorization: str | None) -> Principal:
        if not self.tokens:
            return ANONYMOUS
        if not authorization:
            raise Unauthenticated("missing credentials: send metadata `authorization: Bearer <token>`")
        scheme, _, token = authorization.strip().partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise Unauthenticated("malformed authorization metadata: expected `Bearer <token>`")
        token = token.strip()
        for known, role in self.tokens.items():
            if hmac.compare_digest(known.encode(), token.encode()):
                return self._principal(known, role)
        raise Unauthenticated("invalid bearer token")

    @staticmethod
    def authorize(principal: Principal, required: str, method: str) -> None:
        if ROLE_RANK[principal.role] < ROLE_RANK[required]:
            raise PermissionDenied(f"{method} requires the {required} role; the token has the {principal.role} role")
