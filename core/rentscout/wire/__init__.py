"""The wire contract both sides of a call share: metadata names, correlation ids, the BadRequest codec,
enum names, the properties schema, trace propagation and the distribution's version.

Imported by the server runtime, the services, the SDK and the CLI; imports only the generated stubs
and third-party libraries (see docs/architecture.md).
"""
