"""The wire contract shared by servers and clients; imports only generated stubs and libraries."""
