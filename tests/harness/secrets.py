"""Credentials used by the reliability suite; the suite asserts none of them ever reaches a log."""

ADMIN_TOKEN, READER_TOKEN = "rel-admin-token-0001", "rel-reader-token-0002"
DB_PASSWORD = "pw-never-logged-7731"
