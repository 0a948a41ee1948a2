"""Test harness: private PostgreSQL/Redis, in-process servers, real server processes, grpcurl."""
