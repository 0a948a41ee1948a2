"""The export service."""
