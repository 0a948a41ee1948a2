"""Raw HTTP/2 gRPC calls, for what a grpc client would never send: header values that are not UTF-8,
requests half-closed without a message or with a cut length prefix. One blocking call per connection."""

from __future__ import annotations

import socket
import struct
import time
from dataclasses import dataclass, field

import h2.config
import h2.connection
import h2.events


@dataclass
class RawReply:
    headers: dict[bytes, bytes] = field(default_factory=dict)  # response headers and trailers, merged
    data: bytes = b""
    ended: bool = False  # the server ended the stream (trailers or RST_STREAM) before the wait was over
    reset: bool = False

    @property
    def grpc_status(self) -> int | None:
        value = self.headers.get(b"grpc-status")
        return int(value) if value is not None else None


def frame(message: bytes) -> bytes:
    """A gRPC length-prefixed message."""
    return struct.pack(">BI", 0, len(message)) + message


def call(
    target: str,
    path: str,
    *,
    headers: list[tuple[bytes, bytes]] = (),  # type: ignore[assignment]
    body: bytes | None = b"",
    end_stream: bool = True,
    wait: float = 20.0,
) -> RawReply:
    """POST `path` with gRPC headers plus `headers` (raw bytes, unvalidated); send `body` (None: nothing) as
    the DATA of the request and half-close when `end_stream`; read until the stream ends or `wait` passes."""
    host, port = target.rsplit(":", 1)
    config = h2.config.H2Configuration(
        client_side=True,
        header_encoding=None,
        validate_outbound_headers=False,
        normalize_outbound_headers=False,
        validate_inbound_headers=False,
    )
    conn = h2.connection.H2Connection(config=config)
    reply = RawReply()
    with socket.create_connection((host, int(port)), timeout=wait) as sock:
        conn.initiate_connection()
        sock.sendall(conn.data_to_send())
        stream = conn.get_next_available_stream_id()
        request = [
            (b":method", b"POST"),
            (b":scheme", b"http"),
            (b":path", path.encode()),
            (b":authority", target.encode()),
            (b"content-type", b"application/grpc"),
            (b"te", b"trailers"),
            *headers,
        ]
        conn.send_headers(stream, request, end_stream=end_stream and body is None)
        if body is not None:
            conn.send_data(stream, body, end_stream=end_stream)
        sock.sendall(conn.data_to_send())
        end = time.monotonic() + wait
        while not reply.ended and time.monotonic() < end:
            sock.settimeout(max(end - time.monotonic(), 0.01))
            try:
                chunk = sock.recv(65536)
            except TimeoutError:
                break
            if not chunk:
                break
            for event in conn.receive_data(chunk):
                if isinstance(event, (h2.events.ResponseReceived, h2.events.TrailersReceived)):
                    reply.headers.update({bytes(k): bytes(v) for k, v in event.headers})
                elif isinstance(event, h2.events.DataReceived):
                    reply.data += event.data
                    conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
                elif isinstance(event, h2.events.StreamReset):
                    reply.reset = reply.ended = True
                if getattr(event, "stream_ended", None) is not None:
                    reply.ended = True
            sock.sendall(conn.data_to_send())
    return reply
