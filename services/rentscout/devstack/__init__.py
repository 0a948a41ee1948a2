"""Private PostgreSQL and Redis instances for local stacks and test sessions (never for production)."""
