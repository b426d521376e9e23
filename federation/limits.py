"""Every maximum a certfed service enforces, in one typed object with safe defaults.

Limits are data: servers, clients and validators read them from here, and a deployment overrides
them in its configuration file, never in code.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from federation.errors import InvalidInputError

# Blinded elements a node sends in one EvaluateLocators call; a registry's locator_batch_max may
# not be below it (registry/config.py).
LOCATOR_BATCH = 500

# Rates that may be 0: the rate limiter then does not limit that kind of caller at all.
_RATES_THAT_MAY_BE_OFF = frozenset({"peer_calls_per_s", "operator_calls_per_s"})


@dataclass(frozen=True)
class Limits:
    # Transport.
    max_message_bytes: int = 4 * 1024 * 1024
    server_threads: int = 16
    max_concurrent_rpcs: int = 256
    # Seconds a client waits for one call before giving up; no call waits forever.
    call_timeout_s: float = 10.0
    # What a caller not yet authenticated may hold: a call whose request message has not come
    # within `request_arrival_timeout_s` of its headers is ended; calls waiting for their
    # request or their authentication are bounded per connection and per network address; an
    # address whose calls keep failing authentication (`failed_auth_per_s`, burst
    # `failed_auth_burst`) is refused before its credentials are looked at.
    request_arrival_timeout_s: float = 5.0
    max_calls_per_connection: int = 100
    max_pending_calls_per_connection: int = 8
    max_pending_calls_per_address: int = 64
    failed_auth_per_s: float = 10.0
    failed_auth_burst: int = 300
    # Server-streaming calls (a log subscription) run on threads of their own, never the
    # workers of other calls: at most `max_streams` at once, `max_streams_per_caller` for one
    # caller, each for at most `max_stream_s`; the caller's standing is checked again every
    # `stream_recheck_s` and a caller no longer allowed has its streams ended.
    max_streams: int = 32
    max_streams_per_caller: int = 4
    max_stream_s: float = 3600.0
    stream_recheck_s: float = 1.0
    # Request content.
    max_repeated: int = 10_000
    max_text_length: int = 512
    max_id_length: int = 64
    max_sealed_identity_bytes: int = 16 * 1024
    max_evidence_digests: int = 64
    # A monthly pension above 1,000,000 yuan is a typo in a roll, not a pension (fen).
    max_monthly_amount_fen: int = 100_000_000
    max_page_size: int = 500
    default_page_size: int = 100
    # Calls per second (sustained) and burst per caller; a rate of 0 turns that limit off
    # (`validate` allows it only for the rates). A node's own
    # dispatcher sends at most a batch of deliveries per poll, and a desk of clerks a few
    # calls a second each; these leave room for bulk catch-up while stopping a flood.
    peer_calls_per_s: float = 200.0
    peer_burst: int = 400
    operator_calls_per_s: float = 50.0
    operator_burst: int = 100
    # How far a timestamp from a peer may be in the future before it is refused.
    max_clock_skew_s: float = 300.0
    # Signed directory.
    # A day: a node cut off from the registry trusts a suspension it missed for a day at most.
    directory_lifetime_s: float = 24 * 3600.0
    max_directory_bytes: int = 4 * 1024 * 1024
    # Transparency log: entries per streamed message (also capped to half a message in bytes),
    # entries a follower verifies and stores per transaction, and how often a subscription
    # polls the store for entries other replicas appended.
    log_batch_entries: int = 1000
    sync_step_entries: int = 20_000
    subscription_poll_s: float = 0.5

    def validate(self, section: str = "limits") -> None:
        """Refuse a limit that would break the service, naming it as `section.name`.

        Every limit is positive, except that a rate of calls per second may be 0 (off); the
        default page size may not exceed the largest page.
        """
        for limit in dataclasses.fields(self):
            value = getattr(self, limit.name)
            if limit.name in _RATES_THAT_MAY_BE_OFF and value == 0:
                continue
            if value <= 0:
                problem = "must be positive"
                if limit.name in _RATES_THAT_MAY_BE_OFF:
                    problem = "must be positive, or 0 to turn the rate limit off"
                raise InvalidInputError(f"{section}.{limit.name}", problem)
        if self.default_page_size > self.max_page_size:
            raise InvalidInputError(f"{section}.default_page_size", "must not exceed max_page_size")
