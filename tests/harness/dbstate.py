"""A fingerprint of what the data plane must never change: the rows, the schema, extensions, roles."""

from __future__ import annotations

from rentscout.devstack.instances import PostgresInstance

CHECKSUM_SQL = """
SELECT (SELECT md5(string_agg(p::text, '|' ORDER BY id)) FROM properties p)
    || (SELECT count(*)::text FROM pg_class WHERE relnamespace = 'public'::regnamespace)
    || (SELECT string_agg(extname, ',' ORDER BY extname) FROM pg_extension)
    || (SELECT count(*)::text FROM pg_roles)
"""


def data_fingerprint(pg: PostgresInstance) -> str:
    return pg.psql(CHECKSUM_SQL).strip()
