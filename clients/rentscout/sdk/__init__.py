"""RentScout client SDK: typed gRPC clients with retries, circuit breakers and resumable exports."""
