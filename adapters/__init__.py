"""Edges to the outside world: data-signal feeds, partner forms, bank files and notifiers.

Adapters translate outside formats into calls on a node's public DeskService (over TLS with an
operator token) and back; they never touch a node's tables.
"""
