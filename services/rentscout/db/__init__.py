"""Schema migrations and demo data for the properties table."""
