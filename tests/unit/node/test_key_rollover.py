"""When a node renews its certificate: once less than the configured fraction is left."""

from __future__ import annotations

from datetime import timedelta

from federation.transport import PeerKind, certificate_request, generate_tls_key
from federation_node.links.key_rollover import renewal_due
from registry.ca import FederationCA
from registry.utc import utc_now


def test_a_certificate_is_due_for_renewal_only_in_its_last_fraction() -> None:
    now = utc_now()
    ca = FederationCA.create("test", now=now)
    certificate = ca.issue(
        certificate_request(PeerKind.NODE, "qingdao", generate_tls_key()),
        PeerKind.NODE,
        "qingdao",
        timedelta(days=90),
        now=now,
    )
    assert not renewal_due(certificate, now, 1 / 3)
    assert not renewal_due(certificate, now + timedelta(days=59), 1 / 3)
    assert renewal_due(certificate, now + timedelta(days=61), 1 / 3)
    assert renewal_due(certificate, now + timedelta(days=1), 0.999)
