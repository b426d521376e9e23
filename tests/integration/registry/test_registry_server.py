"""The registry server end to end, on SQLite and PostgreSQL: enrolment, approval, mTLS
authorization, locators and duplicates, status changes and the signed directory."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import grpc
import pytest
import sqlalchemy as sa

from certfed.v1 import common_pb2, directory_pb2, registry_pb2, registry_pb2_grpc
from federation.directory import verify_directory
from federation.errors import (
    AlreadyExistsError,
    InvalidInputError,
    NotFoundError,
    PermissionDeniedError,
    PreconditionError,
    UnauthenticatedError,
    UnavailableError,
)
from federation.registry_client import RegistryClient
from federation.transport import (
    REGISTRY_TLS_NAME,
    PeerKind,
    TlsMaterial,
    anonymous_channel_credentials,
    certificate_request,
    generate_tls_key,
    secure_channel,
)
from registry import locators_store
from registry.ca import FederationCA
from registry.db import create_engine_for, transaction
from signing.keys import SigningKey, VerifyKey

if TYPE_CHECKING:
    from conftest import EnrolledFactory, NodeFactory, RunningRegistry

LOCATOR_A = bytes(range(32))
LOCATOR_B = bytes(range(1, 33))


def _root_key(registry: RunningRegistry) -> VerifyKey:
    return VerifyKey.from_raw(bytes.fromhex(registry.config.paths.root_public_key.read_text()))


def _row_counts(registry: RunningRegistry) -> dict[str, int]:
    engine = create_engine_for(registry.config.effective_database_url)
    queries = {
        "node": "SELECT count(*) FROM node",
        "node_key": "SELECT count(*) FROM node_key",
        "subject_locator": "SELECT count(*) FROM subject_locator",
        "audit_event": "SELECT count(*) FROM audit_event",
    }
    try:
        with engine.connect() as connection:
            return {
                table: int(connection.execute(sa.text(query)).scalar_one())
                for table, query in queries.items()
            }
    finally:
        engine.dispose()


def test_enrolled_node_is_approved_and_receives_a_certificate_and_no_locator_key(
    registry: RunningRegistry, make_node: NodeFactory
) -> None:
    node = make_node("foshan-paying")
    application = node.application()
    with registry.anonymous() as anonymous:
        first = anonymous.enrol(application)
        again = anonymous.enrol(node.application())
        pending = anonymous.get_enrolment("foshan-paying", node.signing_key)
        assert first.status == again.status == common_pb2.NODE_STATUS_PENDING
        assert pending.tls_certificate_pem == b""

        with registry.admin() as admin:
            version = node.approve(admin)
        assert version == 2

        enrolment = anonymous.get_enrolment("foshan-paying", node.signing_key)
    assert enrolment.status == common_pb2.NODE_STATUS_ACTIVE
    assert enrolment.ca_certificate_pem == registry.ca_pem
    # Members hold no locator key: the field that carried it is gone from the contract.
    assert "sealed_locator_key" not in registry_pb2.GetEnrolmentResponse.DESCRIPTOR.fields_by_name

    tls = node.tls(enrolment.tls_certificate_pem, enrolment.ca_certificate_pem)
    with registry.node_client(tls) as client:
        assert client.locate(LOCATOR_A) == []
        published = client.publish_locators([LOCATOR_A, LOCATOR_B, LOCATOR_A])
        assert published.published == 2
        assert list(published.duplicates) == []
        assert client.publish_locators([LOCATOR_A]).published == 0
        assert client.locate(LOCATOR_A) == ["foshan-paying"]
        assert client.withdraw_locators([LOCATOR_B]) == 1
        assert client.locate(LOCATOR_B) == []


def test_duplicate_locator_from_two_paying_nodes_is_reported_to_both(
    enrolled_node: EnrolledFactory,
) -> None:
    _, first = enrolled_node("qingdao-paying", region_codes=("370200",))
    _, second = enrolled_node("datong-paying", region_codes=("140200",))
    assert list(first.publish_locators([LOCATOR_A]).duplicates) == []

    reported = second.publish_locators([LOCATOR_A, LOCATOR_B]).duplicates
    assert [(d.locator, sorted(d.paying_node_ids)) for d in reported] == [
        (LOCATOR_A, ["datong-paying", "qingdao-paying"])
    ]
    seen_by_first = first.list_duplicates()
    assert [(d.locator, sorted(d.paying_node_ids)) for d in seen_by_first] == [
        (LOCATOR_A, ["datong-paying", "qingdao-paying"])
    ]
    assert sorted(first.locate(LOCATOR_A)) == ["datong-paying", "qingdao-paying"]

    second.withdraw_locators([LOCATOR_A])
    assert first.list_duplicates() == []
    assert second.list_duplicates() == []


def test_a_publication_larger_than_a_statement_batch_is_stored_and_compared_whole(
    registry: RunningRegistry, enrolled_node: EnrolledFactory
) -> None:
    _, first = enrolled_node("qingdao-paying", region_codes=("370200",))
    enrolled_node("datong-paying", region_codes=("140200",))
    # More than one statement's worth on SQLite (locators_store.BATCH_SIZE), one array on
    # PostgreSQL: a roll's publication, as the node's outbox sends it.
    locators = [index.to_bytes(32, "big") for index in range(1, 3 * locators_store.BATCH_SIZE)]
    now = datetime.now(UTC)
    engine = create_engine_for(registry.config.effective_database_url)
    try:
        with transaction(engine) as session:
            published = locators_store.publish(session, "qingdao-paying", locators, now)
        assert published.published == len(locators)
        with transaction(engine) as session:
            again = locators_store.publish(session, "qingdao-paying", locators[::2], now)
        assert again.published == 0
        with transaction(engine) as session:
            shared = locators_store.publish(session, "datong-paying", locators[600:], now)
        assert sorted(d.locator for d in shared.duplicates) == locators[600:]
        assert {d.node_ids for d in shared.duplicates} == {("datong-paying", "qingdao-paying")}
        with transaction(engine) as session:
            assert (
                locators_store.withdraw(session, "datong-paying", locators) == len(locators) - 600
            )
    finally:
        engine.dispose()
    assert first.locate(locators[0]) == ["qingdao-paying"]
    assert first.list_duplicates() == []


def test_a_publication_answers_only_its_own_duplicates_not_every_earlier_one(
    registry: RunningRegistry, enrolled_node: EnrolledFactory
) -> None:
    enrolled_node("qingdao-paying", region_codes=("370200",))
    enrolled_node("datong-paying", region_codes=("140200",))
    locators = [index.to_bytes(32, "big") for index in range(1, 2 * locators_store.BATCH_SIZE)]
    earlier, later = locators[:10], locators[10:]
    now = datetime.now(UTC)
    engine = create_engine_for(registry.config.effective_database_url)
    try:
        with transaction(engine) as session:
            locators_store.publish(session, "qingdao-paying", locators, now)
        with transaction(engine) as session:
            first = locators_store.publish(session, "datong-paying", earlier, now)
        assert [d.locator for d in first.duplicates] == earlier
        # The second batch shares more people: its answer names those, not the first batch's.
        with transaction(engine) as session:
            second = locators_store.publish(session, "datong-paying", later, now)
        assert [d.locator for d in second.duplicates] == later
        with transaction(engine) as session:
            assert [d.locator for d in locators_store.duplicates(session, "datong-paying")] == (
                locators
            )
            # Asked about people it does not share, or a mix, it names only the shared ones.
            outside = (10**6).to_bytes(32, "big")
            among = locators_store.duplicates(session, "datong-paying", [outside, later[0]])
            assert [(d.locator, d.node_ids) for d in among] == [
                (later[0], ("datong-paying", "qingdao-paying"))
            ]
    finally:
        engine.dispose()


def test_call_without_client_certificate_on_mtls_port_fails(registry: RunningRegistry) -> None:
    with (
        RegistryClient(
            registry.mtls_endpoint, anonymous_channel_credentials(registry.ca_pem)
        ) as client,
        pytest.raises(UnavailableError),
    ):
        client.get_directory(0)


def test_locator_call_without_client_certificate_on_enrol_port_is_unauthenticated(
    registry: RunningRegistry,
) -> None:
    channel = secure_channel(
        registry.enrol_endpoint,
        REGISTRY_TLS_NAME,
        grpc.ssl_channel_credentials(root_certificates=registry.ca_pem),
        max_message_bytes=1024 * 1024,
    )
    with channel:
        stub = registry_pb2_grpc.RegistryServiceStub(channel)
        with pytest.raises(grpc.RpcError) as refused:
            stub.Locate(registry_pb2.LocateRequest(locator=LOCATOR_A), timeout=10)
        assert refused.value.code() is grpc.StatusCode.UNAUTHENTICATED
        with pytest.raises(grpc.RpcError) as refused:
            stub.ListNodes(registry_pb2.ListNodesRequest(), timeout=10)
        assert refused.value.code() is grpc.StatusCode.UNAUTHENTICATED


def test_node_calling_admin_rpc_is_permission_denied(
    registry: RunningRegistry, enrolled_node: EnrolledFactory
) -> None:
    node, _ = enrolled_node("lanzhou-agency", region_codes=("620102",))
    enrolment = registry.anonymous().get_enrolment("lanzhou-agency", node.signing_key)
    channel = secure_channel(
        registry.mtls_endpoint,
        REGISTRY_TLS_NAME,
        node.tls(enrolment.tls_certificate_pem, registry.ca_pem).channel_credentials(),
        max_message_bytes=1024 * 1024,
    )
    with channel:
        stub = registry_pb2_grpc.RegistryServiceStub(channel)
        for call, request in (
            (stub.ListNodes, registry_pb2.ListNodesRequest()),
            (stub.ApproveEnrolment, registry_pb2.ApproveEnrolmentRequest(node_id="x-y-z")),
        ):
            with pytest.raises(grpc.RpcError) as refused:
                call(request, timeout=10)
            assert refused.value.code() is grpc.StatusCode.PERMISSION_DENIED


def test_residence_agency_may_locate_but_not_publish_locators(
    enrolled_node: EnrolledFactory,
) -> None:
    _, client = enrolled_node("chengguan-agency", roles=("residence_agency",))
    assert client.locate(LOCATOR_A) == []
    with pytest.raises(PermissionDeniedError, match="paying_office"):
        client.publish_locators([LOCATOR_A])
    with pytest.raises(PermissionDeniedError):
        client.list_duplicates()


def test_suspended_node_is_permission_denied_until_reinstated_and_revocation_is_final(
    registry: RunningRegistry, enrolled_node: EnrolledFactory
) -> None:
    node, client = enrolled_node("macau-liaison", region_codes=("MO",), roles=("partner_liaison",))
    with registry.admin() as admin:
        admin.set_status("macau-liaison", common_pb2.NODE_STATUS_SUSPENDED, "audit of office")
        with pytest.raises(PermissionDeniedError, match="suspended: audit of office"):
            client.locate(LOCATOR_A)
        admin.set_status("macau-liaison", common_pb2.NODE_STATUS_ACTIVE, "")
        assert client.locate(LOCATOR_A) == []
        admin.set_status("macau-liaison", common_pb2.NODE_STATUS_REVOKED, "office closed")
        with pytest.raises(PermissionDeniedError, match="revoked"):
            client.locate(LOCATOR_A)
        with pytest.raises(PreconditionError, match="revocation is final"):
            admin.set_status("macau-liaison", common_pb2.NODE_STATUS_ACTIVE, "")
        with pytest.raises(PreconditionError, match="not pending"):
            node.approve(admin)


def test_certificate_signed_by_another_ca_is_refused_at_handshake(
    registry: RunningRegistry, make_node: NodeFactory
) -> None:
    rogue_ca = FederationCA.create("rogue")
    node = make_node("rogue-node")
    certificate = rogue_ca.issue(
        certificate_request(PeerKind.NODE, "rogue-node", node.tls_key_pem),
        PeerKind.NODE,
        "rogue-node",
        timedelta(days=1),
    )
    tls = TlsMaterial(certificate, node.tls_key_pem, registry.ca_pem)
    with (
        registry.node_client(tls) as client,
        pytest.raises(UnavailableError),
    ):
        client.locate(LOCATOR_A)


def test_certificate_the_registry_did_not_issue_to_the_node_is_unauthenticated(
    registry: RunningRegistry, enrolled_node: EnrolledFactory
) -> None:
    enrolled_node("qingdao-paying", region_codes=("370200",))
    ca = FederationCA.load(registry.config.paths.ca_certificate, registry.config.paths.ca_key)
    other_key = generate_tls_key()
    unrecorded = ca.issue(
        certificate_request(PeerKind.NODE, "qingdao-paying", other_key),
        PeerKind.NODE,
        "qingdao-paying",
        timedelta(days=1),
    )
    tls = TlsMaterial(unrecorded, other_key, registry.ca_pem)
    with (
        registry.node_client(tls) as client,
        pytest.raises(UnauthenticatedError, match="not one this registry issued"),
    ):
        client.locate(LOCATOR_A)


def test_directory_version_increases_on_approve_and_suspend(
    registry: RunningRegistry, enrolled_node: EnrolledFactory
) -> None:
    root = _root_key(registry)
    now = datetime.now(UTC)
    with registry.anonymous() as anonymous:
        initial = anonymous.get_directory(0)
        assert initial is not None
        first = verify_directory(initial, root, now=now)
        assert first.version == 1
        assert list(first.directory.nodes) == []
        assert anonymous.get_directory(1) is None

        node, _ = enrolled_node("foshan-paying")
        approved_envelope = anonymous.get_directory(1)
        assert approved_envelope is not None
        approved = verify_directory(approved_envelope, root, now=now, trusted=first)
        assert approved.version == 2
        entry = approved.active_node("foshan-paying")
        assert entry.roles == [common_pb2.ROLE_PAYING_OFFICE, common_pb2.ROLE_RESIDENCE_AGENCY]
        assert [key.public_key for key in entry.signing_keys] == [node.signing_key.public_key.raw]
        assert len(entry.tls_certificate_sha256) == 1

        with registry.admin() as admin:
            version = admin.set_status(
                "foshan-paying", common_pb2.NODE_STATUS_SUSPENDED, "under investigation"
            )
        assert version == 3
        suspended_envelope = anonymous.get_directory(2)
        assert suspended_envelope is not None
        suspended = verify_directory(suspended_envelope, root, now=now, trusted=approved)
        entry = suspended.node("foshan-paying")
        assert entry.status == common_pb2.NODE_STATUS_SUSPENDED
        assert entry.status_reason == "under investigation"
        assert entry.HasField("status_changed_at")


def test_revocation_with_past_effective_time_revokes_signing_keys_from_then(
    registry: RunningRegistry, enrolled_node: EnrolledFactory
) -> None:
    enrolled_node("datong-paying", region_codes=("140200",))
    effective = datetime.now(UTC) - timedelta(minutes=1)
    with registry.admin() as admin:
        admin.set_status(
            "datong-paying", common_pb2.NODE_STATUS_REVOKED, "key compromised", effective
        )
        envelope = admin.get_directory(0)
    assert envelope is not None
    directory = verify_directory(envelope, _root_key(registry), now=datetime.now(UTC))
    entry = directory.node("datong-paying")
    assert entry.status == common_pb2.NODE_STATUS_REVOKED
    revoked_at = entry.signing_keys[0].revoked_at.ToDatetime(tzinfo=UTC)
    assert abs((revoked_at - effective).total_seconds()) < 0.001
    assert directory.signing_keys("datong-paying", datetime.now(UTC)) == {}


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"region_codes": ["4406"]}, "region_codes[0]"),
        ({"region_codes": ["990000"]}, "region_codes[0]"),
        ({"node_id": "Bad_Node!"}, "node_id"),
        ({"endpoint": "no-port.example.org"}, "endpoint"),
        ({"roles": []}, "roles"),
        ({"hpke_public_key": b"short"}, "hpke_public_key"),
    ],
)
def test_malformed_enrol_input_is_invalid_argument_naming_the_field_and_writes_nothing(
    registry: RunningRegistry, make_node: NodeFactory, overrides: dict[str, Any], field: str
) -> None:
    node = make_node("foshan-paying")
    before = _row_counts(registry)
    with registry.anonymous() as anonymous, pytest.raises(InvalidInputError) as refused:
        anonymous.enrol(node.application(**overrides))
    assert field in refused.value.field
    assert _row_counts(registry) == before


def test_application_signed_by_another_key_is_refused(
    registry: RunningRegistry, make_node: NodeFactory
) -> None:
    node = make_node("foshan-paying")
    impostor = make_node("foshan-paying")
    envelope = node.application(signing_public_key=impostor.signing_key.public_key.raw)
    with registry.anonymous() as anonymous, pytest.raises(InvalidInputError) as refused:
        anonymous.enrol(envelope)
    assert refused.value.field == "application.signatures"


def test_oversized_locator_list_is_invalid_argument_and_writes_nothing(
    registry: RunningRegistry, enrolled_node: EnrolledFactory
) -> None:
    _, client = enrolled_node("foshan-paying")
    before = _row_counts(registry)
    too_many = [os.urandom(32) for _ in range(registry.config.limits.max_repeated + 1)]
    with pytest.raises(InvalidInputError) as refused:
        client.publish_locators(too_many)
    assert refused.value.field == "locators"
    with pytest.raises(InvalidInputError) as refused:
        client.publish_locators([LOCATOR_A, b"\x00" * 31])
    assert refused.value.field == "locators[1]"
    assert _row_counts(registry) == before


def test_different_application_for_an_existing_node_id_already_exists(
    registry: RunningRegistry, make_node: NodeFactory
) -> None:
    with registry.anonymous() as anonymous:
        anonymous.enrol(make_node("foshan-paying").application())
        with pytest.raises(AlreadyExistsError, match="foshan-paying"):
            anonymous.enrol(make_node("foshan-paying").application())


def test_unknown_node_enrolment_is_not_found(registry: RunningRegistry) -> None:
    with registry.anonymous() as anonymous, pytest.raises(NotFoundError):
        anonymous.get_enrolment("nobody-here", SigningKey.generate())
    with registry.admin() as admin, pytest.raises(NotFoundError):
        admin.approve(
            "nobody-here", signing_key_fingerprint="00" * 32, tls_key_fingerprint="00" * 32
        )


def test_admin_lists_nodes_and_the_audit_records_who_did_what(
    registry: RunningRegistry, enrolled_node: EnrolledFactory, make_node: NodeFactory
) -> None:
    enrolled_node("foshan-paying")
    with registry.anonymous() as anonymous:
        anonymous.enrol(make_node("qingdao-paying", region_codes=("370200",)).application())
    with registry.admin() as admin:
        admin.set_status("foshan-paying", common_pb2.NODE_STATUS_SUSPENDED, "audit")
        nodes = {node.node_id: node for node in admin.list_nodes()}
    assert nodes["foshan-paying"].status == common_pb2.NODE_STATUS_SUSPENDED
    assert nodes["foshan-paying"].status_reason == "audit"
    assert nodes["qingdao-paying"].status == common_pb2.NODE_STATUS_PENDING
    assert list(nodes["qingdao-paying"].region_codes) == ["370200"]

    engine = create_engine_for(registry.config.effective_database_url)
    try:
        with engine.connect() as connection:
            rows = connection.execute(
                sa.text(
                    "SELECT actor, action, node_id, detail, directory_version "
                    "FROM audit_event ORDER BY id"
                )
            ).all()
    finally:
        engine.dispose()
    assert [tuple(row) for row in rows] == [
        ("node:foshan-paying", "enrol", "foshan-paying", "", None),
        ("admin:admin", "approve", "foshan-paying", "", 2),
        ("node:qingdao-paying", "enrol", "qingdao-paying", "", None),
        ("admin:admin", "suspend", "foshan-paying", "audit", 3),
    ]


def test_directory_payload_names_the_federation(registry: RunningRegistry) -> None:
    with registry.anonymous() as anonymous:
        envelope = anonymous.get_directory(0)
    assert envelope is not None
    directory = directory_pb2.Directory()
    directory.ParseFromString(envelope.payload)
    assert directory.federation_id == "test-federation"
