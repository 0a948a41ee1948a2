"""Ports for a whole `rentscout stack`: an offset at which every gRPC and metrics port is free now."""

from __future__ import annotations

import socket

STACK_PORTS = (50051, 50052, 50053, 9101, 9102, 9103)  # the services' default gRPC and metrics ports


def free_offset(start: int) -> int:
    """The first offset from `start` (steps of 10) at which every port of the stack is free now: a port
    held by another process (say a client socket in the ephemeral range) would stop the stack."""
    for offset in range(start, start + 10 * 200, 10):
        sockets = []
        try:
            for port in STACK_PORTS:
                sock = socket.socket()
                sockets.append(sock)
                sock.bind(("127.0.0.1", port + offset))
            return offset
        except OSError:
            continue
        finally:
            for sock in sockets:
                sock.close()
    raise AssertionError("no free set of stack ports")
