"""The node's links: signed directory, peer channels, outbox dispatcher, key rollover."""
