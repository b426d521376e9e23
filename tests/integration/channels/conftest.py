"""The registry and the Foshan paying office as real processes on PostgreSQL, with the policy of
the channel tests and a feed account for the face-recognition providers, shared by the channel
tests (each test registers people of its own)."""

from __future__ import annotations

import ssl
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest

from certfed.v1 import attestation_pb2, common_pb2, desk_pb2
from cli.bench.webhook_gateway import self_signed_certificate
from cli.launcher import LocalFederation
from cli.operator_commands import create_operator, host_actor
from federation.timestamps import to_timestamp
from federation_node.store import db
from federation_node.store.models import OperatorRole
from tests.helpers.identities import resident_id
from tests.helpers.nodes import FOSHAN, offices_with_policy

POLICY = """
[face_recognition]
min_liveness_score = 90
min_match_score = 85
helper_relations = ["spouse"]
"""
KIOSK = "foshan-kiosk"
APP = "foshan-app"
# NodeHandle.tokens key of the feed account bound to KIOSK and APP.
PROVIDERS = "providers"
# An operator who is both clerk and reviewer.
SENIOR = "senior"
STATUS_SERVICE = "status-service"


def resident(serial: int) -> str:
    return resident_id("440604", date(1951, 4, 2), serial)


def register(office: LocalFederation, serial: int, *, valid_days: int = 20, phone: str = "") -> str:
    with office.desk(FOSHAN.node_id) as desk:
        answer = desk.stub.RegisterBeneficiary(
            desk_pb2.RegisterBeneficiaryRequest(
                identity=attestation_pb2.IdentityBundle(
                    identity_type=common_pb2.IDENTITY_TYPE_RESIDENT_ID,
                    identity_number=resident(serial),
                    full_name="梁淑芬",
                    phone=phone,
                ),
                residence_region="440604",
                valid_until=to_timestamp(datetime.now(UTC) + timedelta(days=valid_days)),
                monthly_amount_fen=310_000,
            )
        )
    beneficiary_id: str = answer.beneficiary.beneficiary_id
    return beneficiary_id


def self_signed(folder: Path) -> tuple[Path, Path, ssl.SSLContext]:
    """A certificate for 127.0.0.1, and a client context that trusts only it."""
    cert_path, key_path = self_signed_certificate(folder, "face-recognition callback")
    client = ssl.create_default_context(cafile=str(cert_path))
    return cert_path, key_path, client


@pytest.fixture(scope="package")
def office(
    tmp_path_factory: pytest.TempPathFactory, postgres_url_factory: Callable[[], str]
) -> Iterator[LocalFederation]:
    workdir = tmp_path_factory.mktemp("channels")
    with offices_with_policy(
        workdir, lambda _node: postgres_url_factory(), FOSHAN, POLICY
    ) as local:
        handle = local.nodes[FOSHAN.node_id]
        engine = db.create_engine_for(handle.config.effective_database_url)
        try:
            with db.session_scope(engine) as session:
                _, token = create_operator(
                    session,
                    label="face-recognition providers",
                    roles=(OperatorRole.FEED,),
                    actor=host_actor(),
                    now=datetime.now(UTC),
                    feed_sources=(KIOSK, APP),
                )
                # The retiree status service: a service account that only reads statuses.
                _, status_service = create_operator(
                    session,
                    label="retiree status service",
                    roles=(OperatorRole.FEED,),
                    actor=host_actor(),
                    now=datetime.now(UTC),
                    feed_sources=("status-service",),
                )
                # Records and reviews: the one the four-eyes rule has to stop.
                _, senior = create_operator(
                    session,
                    label="senior",
                    roles=(OperatorRole.CLERK, OperatorRole.REVIEWER),
                    actor=host_actor(),
                    now=datetime.now(UTC),
                )
        finally:
            engine.dispose()
        handle.tokens[PROVIDERS] = token
        handle.tokens[SENIOR] = senior
        handle.tokens[STATUS_SERVICE] = status_service
        yield local
