"""A query RPC's request bytes to its parameters and entry key, remembered by those bytes.

A near-cache hit should cost about as much as a bare RPC. A popular request arrives as the same few
bytes again and again, so decoding it, validating it and hashing its parameters into the entry key
happen once per distinct request, not once per call: a near hit does no protobuf work at all.
Only valid, small requests are remembered (least recently used out first): an invalid one is refused
on every call, and large ones (up to the server's receive limit) cannot make the memo big.
"""

from __future__ import annotations

from collections import OrderedDict

from rentscout.cache_service.keys import KeySpace
from rentscout.cache_service.registry import CachedQuery, Params
from rentscout.runtime.decoding import Undecodable, safe_deserializer
from rentscout.runtime.errors import Violations
from rentscout.wire.validation import city_problem

MAX_REMEMBERED = 4096
MAX_REMEMBERED_BYTES = 256  # a query's request is a few fields; a bigger one is decoded every time


class RequestKeys:
    def __init__(self, query: CachedQuery, keys: KeySpace, method: str, max_entries: int = MAX_REMEMBERED) -> None:
        self._query = query
        self._keys = keys
        parse = safe_deserializer(query.request.FromString, method)
        assert parse is not None  # (None only for no deserializer)
        self._parse = parse
        self._max_entries = max_entries
        self._memo: OrderedDict[bytes, tuple[Params, str]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._memo)

    def resolve(self, raw: bytes) -> tuple[Params, str]:
        """(parameters, entry key) of the request `raw`; InvalidArgument when it cannot be decoded or
        its fields are invalid (the query's `params` says which)."""
        found = self._memo.get(raw)
        if found is not None:
            self._memo.move_to_end(raw)
            return found
        request = self._parse(raw)
        if isinstance(request, Undecodable):
            raise request.error()
        q = self._query
        params = q.params(request)
        found = (params, self._keys.entry(q.name, q.version, params))
        if len(raw) <= MAX_REMEMBERED_BYTES and self._max_entries > 0:
            self._memo[raw] = found  # its parameters are shared by later calls: nothing may change them
            if len(self._memo) > self._max_entries:
                self._memo.popitem(last=False)
        return found


def check_city(v: Violations, field: str, raw: str) -> str:
    """A city name, trimmed, by the shared rule (rentscout.wire.validation). Unknown cities are fine."""
    city = raw.strip()
    if (problem := city_problem(city)) is not None:
        v.add(field, problem)
    return city
