"""Flight tickets: what a DoGet redeems, signed like resume tokens and bound to their request and id range.

A ticket is a serialized ExportPropertiesRequest (format ARROW, the filter, columns and limit of the export)
whose `resume_token` is a token of tokens.TokenCodec for the endpoint's window (ids in (after, upper], rows
already sent). The token is signed over a Flight fingerprint of the request (its export fingerprint under a
Flight domain), so a ticket's request cannot be swapped, its range cannot be edited, and neither an
ExportProperties resume token nor a ticket of another request is a valid ticket. The resume ticket after each
batch (FlightData.app_metadata) is the same thing for the rest of the window: any Flight client resumes with
`do_get(Ticket(app_metadata))`.
"""

from __future__ import annotations

import hashlib

from google.protobuf.message import DecodeError

from rentscout.export.v1 import export_pb2
from rentscout.export_service.tokens import KeyRing, ResumeState, TokenCodec
from rentscout.runtime.errors import InvalidArgument

FIELD = "ticket"
MAX_TICKET_BYTES = 256 * 1024


def flight_fingerprint(export_fingerprint: bytes) -> bytes:
    return hashlib.sha256(b"rentscout.flight.ticket\0" + export_fingerprint).digest()[:16]


def parse(ticket: bytes) -> export_pb2.ExportPropertiesRequest:
    """The request in a ticket (its token still to verify); INVALID_ARGUMENT on `ticket` when it is none."""
    if not ticket:
        raise InvalidArgument(FIELD, "is empty: use a ticket of GetFlightInfo's endpoints")
    if len(ticket) > MAX_TICKET_BYTES:
        raise InvalidArgument(FIELD, f"is malformed (longer than {MAX_TICKET_BYTES} bytes)")
    try:
        request = export_pb2.ExportPropertiesRequest.FromString(ticket)
    except DecodeError:
        raise InvalidArgument(FIELD, "is malformed (not a ticket of this service)") from None
    if not request.resume_token:
        raise InvalidArgument(FIELD, "is malformed (not a ticket of this service)")
    return request


class TicketCodec:
    def __init__(self, tokens: TokenCodec) -> None:
        self.tokens = tokens

    def ticket(self, request: export_pb2.ExportPropertiesRequest, fingerprint: bytes, state: ResumeState) -> bytes:
        """The ticket of `request`'s window `state` (`fingerprint`: the request's export fingerprint)."""
        out = export_pb2.ExportPropertiesRequest()
        out.CopyFrom(request)
        out.resume_token = self.tokens.encode(flight_fingerprint(fingerprint), state)
        return out.SerializeToString(deterministic=True)

    def state(self, request: export_pb2.ExportPropertiesRequest, fingerprint: bytes) -> ResumeState:
        """The verified window of a parsed ticket; INVALID_ARGUMENT on `ticket` when forged or of another request."""
        try:
            return self.tokens.decode(request.resume_token, flight_fingerprint(fingerprint))
        except InvalidArgument as exc:
            raise _on_ticket(exc) from None


async def verified_state(keys: KeyRing, request: export_pb2.ExportPropertiesRequest, fingerprint: bytes) -> ResumeState:
    """TicketCodec.state with the service's key ring: a ticket signed with a key rotated in since the last load
    is verified after one reload, as resume tokens are (KeyRing.decode)."""
    try:
        return await keys.decode(request.resume_token, flight_fingerprint(fingerprint))
    except InvalidArgument as exc:
        raise _on_ticket(exc) from None


def _on_ticket(exc: InvalidArgument) -> InvalidArgument:
    return InvalidArgument([(FIELD, description) for _, description in exc.violations])
