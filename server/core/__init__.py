"""Dialect-free heart of the server: request types, events, errors and the chat pipeline."""
