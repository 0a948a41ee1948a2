"""Resilience primitives shared by servers and clients: circuit breaker, retry with backoff, clock.

Pure Python: no gRPC, no metrics, nothing from the layers above (see docs/architecture.md).
"""
