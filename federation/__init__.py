"""Shared ground: errors, limits, transport, server factory, directory trust, clients."""
