"""Property-based fuzzing of every RPC of a running registry and node.

For each RPC in the generated descriptors, hypothesis sends messages built from the request
type's descriptor (every field with random and edge values: NUL and over-long strings, unknown
enum values, int64 extremes, timestamps outside 0001-9999, odd byte lengths, repeated fields),
mutations of a valid request, and raw bytes (random and truncated serialisations) through a
channel with identity serializers. The callers hold every role the RPC asks for, so the input
reaches validation. After each RPC's run:

* no call ended UNKNOWN or INTERNAL, or any status outside EXPECTED;
* the registry and the node still answer health checks;
* no table of either database changed unless a call of that RPC succeeded: a refused call
  writes nothing, not even part of what it would have written (a desk call's valid locator
  evaluations at the registry, successful registry calls, are counted and audited there).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import grpc
import pytest
import sqlalchemy
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from google.protobuf import message_factory
from google.protobuf.timestamp_pb2 import Timestamp
from grpc_health.v1 import health_pb2, health_pb2_grpc
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from certfed.v1 import attestation_pb2, common_pb2, desk_pb2, federation_pb2
from cli.launcher import LocalFederation
from cli.operator_commands import create_operator
from federation.timestamps import to_timestamp
from federation.transport import (
    REGISTRY_TLS_NAME,
    anonymous_channel_credentials,
    node_tls_name,
    secure_channel,
)
from federation.witness_protocol import LOG_ORIGIN_PREFIX
from federation_node.store import audit, db
from federation_node.store.models import OperatorRole
from registry.locator_oprf import EVALUATE_ACTION
from registry.service import ACCESS, Access
from tests.helpers.identities import resident, resident_id
from tests.helpers.nodes import MACAU
from tests.helpers.nodes import QINGDAO as TARGET

# Holds every role a FederationService method allows, and pays pensions for the registry.
CALLER = MACAU
NODE_SETTINGS = {
    # Off here: this test is about what input does, not how fast it comes.
    "limits": {"peer_calls_per_s": 0, "operator_calls_per_s": 0},
    "operator_sessions": {
        "peer_sign_ins_per_s": 1000,
        "peer_sign_in_burst": 1000,
        "max_failed_per_address": 1000,
    },
    # No background checkpoint rows while row counts are compared.
    "checkpoint_interval_s": 3600,
}
# Tables the node writes on its own timer, whatever callers send: the migration version, and the
# checkpoint the publisher signs and has cosigned once after start (to learn the witness's size).
BACKGROUND_TABLES = frozenset({"alembic_version", "log_checkpoint"})
# What a refused call writes on purpose: a failed sign-in is counted (for the lockout) and audited.
WRITTEN_WHEN_REFUSED = {
    "DeskService.SignIn": frozenset({"sign_in_failure", "audit_pending", "audit_record"}),
}
# A desk call that ends refused (say NOT_FOUND) may still have made a valid locator evaluation
# at the registry on the node's behalf: a successful registry call, which the registry counts
# (a node's first one of the day adds its locator_evaluation_day row) and audits. Those, and
# nothing else, may change in the registry during a desk RPC none of whose calls succeeded.
DESK_EVALUATIONS = "SELECT COUNT(*) FROM audit_event WHERE action = :action AND actor = :actor"
# SignIn takes no token: random user names and passwords are refused as wrong ones.
ALSO_EXPECTED = {"DeskService.SignIn": frozenset({grpc.StatusCode.UNAUTHENTICATED})}
EXPECTED = frozenset(
    {
        grpc.StatusCode.OK,
        grpc.StatusCode.INVALID_ARGUMENT,
        grpc.StatusCode.NOT_FOUND,
        grpc.StatusCode.ALREADY_EXISTS,
        grpc.StatusCode.FAILED_PRECONDITION,
        grpc.StatusCode.PERMISSION_DENIED,
        grpc.StatusCode.OUT_OF_RANGE,
        grpc.StatusCode.UNIMPLEMENTED,
        # A resource limit (message size, rate) reached by a generated message.
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        # A subscription that is allowed and keeps following ends at the test's deadline.
        grpc.StatusCode.DEADLINE_EXCEEDED,
    }
)
EXAMPLES_PER_RPC = 40
RAW_EXAMPLES_PER_RPC = 15
MAX_DEPTH = 3

NOW = int(datetime.now(UTC).timestamp())
INT64 = (-(2**63), 2**63 - 1)
INT32 = (-(2**31), 2**31 - 1)
UINT64 = (0, 2**64 - 1)
UINT32 = (0, 2**32 - 1)
_D = _descriptor.FieldDescriptor

# Strings a validator could get wrong: empty, NUL and control characters, over-long, ids in
# non-canonical forms, region codes and node ids that almost pass.
STRINGS = st.one_of(
    st.text(max_size=24),
    st.sampled_from(
        [
            "",
            "\x00",
            "a\x00b",
            "\x1b[31m",
            "x" * 600,
            "0190f0f0-0000-7000-8000-000000000000",
            "0190F0F0-0000-7000-8000-000000000000",
            "{0190f0f0-0000-7000-8000-000000000000}",
            "urn:uuid:0190f0f0-0000-7000-8000-000000000000",
            "620102",
            "999999",
            "MO",
            "qingdao",
            "macau-desk",
            "QINGDAO",
            "v1:",
            "djE6AA",  # a page token naming a NUL key
            "620102194801010011",
            "Bearer x",
        ]
    ),
)
BYTES = st.one_of(st.binary(max_size=40), st.binary(min_size=32, max_size=32))


def _int_strategy(bounds: tuple[int, int]) -> st.SearchStrategy[int]:
    low, high = bounds
    edges = [v for v in (low, high, 0, 1, -1, 2**31, 2**31 - 1, 2**32) if low <= v <= high]
    return st.one_of(st.integers(low, high), st.sampled_from(edges))


TIMESTAMP = st.builds(
    Timestamp,
    seconds=st.one_of(
        st.integers(NOW - 86400 * 400, NOW + 86400 * 400),
        st.sampled_from([NOW, NOW + 600, NOW - 600, 0, -62_135_596_801, 253_402_300_800]),
        st.integers(*INT64),
    ),
    nanos=st.one_of(st.just(0), st.integers(*INT32)),
)


def _scalar(field: _descriptor.FieldDescriptor) -> st.SearchStrategy[Any]:
    kind = field.type
    if kind == _D.TYPE_STRING:
        return STRINGS
    if kind == _D.TYPE_BYTES:
        return BYTES
    if kind == _D.TYPE_BOOL:
        return st.booleans()
    if kind == _D.TYPE_ENUM:
        return st.integers(-3, len(field.enum_type.values) + 3)
    if kind in (_D.TYPE_DOUBLE, _D.TYPE_FLOAT):
        return st.floats(allow_nan=True, width=32 if kind == _D.TYPE_FLOAT else 64)
    if kind in (_D.TYPE_UINT64, _D.TYPE_FIXED64):
        return _int_strategy(UINT64)
    if kind in (_D.TYPE_UINT32, _D.TYPE_FIXED32):
        return _int_strategy(UINT32)
    if kind in (_D.TYPE_INT32, _D.TYPE_SINT32, _D.TYPE_SFIXED32):
        return _int_strategy(INT32)
    return _int_strategy(INT64)


def message_strategy(
    descriptor: _descriptor.Descriptor, depth: int = 0
) -> st.SearchStrategy[_message.Message]:
    """Messages of this type with any subset of fields set to generated values."""
    cls = message_factory.GetMessageClass(descriptor)
    if descriptor.full_name == "google.protobuf.Timestamp":
        return TIMESTAMP
    optional: dict[str, st.SearchStrategy[Any]] = {}
    for field in descriptor.fields:
        if field.type == _D.TYPE_MESSAGE:
            if depth >= MAX_DEPTH:
                continue
            value: st.SearchStrategy[Any] = st.deferred(
                lambda f=field: message_strategy(f.message_type, depth + 1)
            )
        else:
            value = _scalar(field)
        if field.is_repeated:
            value = st.lists(value, max_size=4)
        optional[field.name] = value

    def build(values: dict[str, Any]) -> _message.Message:
        message = cls()
        for name, value in values.items():
            field = descriptor.fields_by_name[name]
            if field.is_repeated:
                target = getattr(message, name)
                if field.type == _D.TYPE_MESSAGE:
                    for item in value:
                        target.add().CopyFrom(item)
                else:
                    target.extend(value)
            elif field.type == _D.TYPE_MESSAGE:
                getattr(message, name).CopyFrom(value)
            else:
                setattr(message, name, value)
        return message

    return st.fixed_dictionaries({}, optional=optional).map(build)


def _resident() -> attestation_pb2.IdentityBundle:
    number = resident_id("370202", date(1948, 1, 1), 1)
    return resident(number, "Fuzz Person", phone="1", address="2")


def _seeds() -> dict[str, _message.Message]:
    """Valid requests, which mutation then breaks one field at a time."""
    now = datetime.now(UTC)
    return {
        "RegisterBeneficiary": desk_pb2.RegisterBeneficiaryRequest(
            identity=_resident(), residence_region="370202"
        ),
        "RecordCertification": desk_pb2.RecordCertificationRequest(
            walk_in=_resident(),
            method=common_pb2.CERTIFICATION_METHOD_ON_SITE,
            outcome=common_pb2.CERTIFICATION_OUTCOME_ALIVE,
            observed_at=to_timestamp(now),
        ),
        "RequestAssistance": federation_pb2.RequestAssistanceRequest(
            request_id="0190f0f0-0000-7000-8000-000000000000",
            paying_node_id=CALLER.node_id,
            paying_region="MO",
            residence_region="370202",
            subject_locator=bytes(32),
            sealed_identity=b"\x01" * 80,
            deadline=to_timestamp(now + timedelta(days=30)),
            requested_at=to_timestamp(now),
        ),
    }


def mutated(seed: _message.Message) -> st.SearchStrategy[_message.Message]:
    """The seed with one field replaced by a generated value (or cleared)."""
    generated = message_strategy(seed.DESCRIPTOR)

    def mutate(field_name: str, other: _message.Message) -> _message.Message:
        result = type(seed)()
        result.CopyFrom(seed)
        result.ClearField(field_name)
        field = seed.DESCRIPTOR.fields_by_name[field_name]
        if field.is_repeated or field.type == _D.TYPE_MESSAGE:
            if field.is_repeated or other.HasField(field_name):
                getattr(result, field_name).MergeFrom(getattr(other, field_name))
        else:
            setattr(result, field_name, getattr(other, field_name))
        return result

    names = [field.name for field in seed.DESCRIPTOR.fields]
    return st.builds(mutate, st.sampled_from(names), generated)


@dataclass
class Target:
    local: LocalFederation
    operator_token: str
    node_url: str
    registry_url: str

    def channel(self, service: str, method_name: str) -> grpc.Channel:
        ca = self.local.registry_paths.trust_ca_certificate.read_bytes()
        if service == "DeskService":
            port = self.local.nodes[TARGET.node_id].desk_port
            return secure_channel(
                f"127.0.0.1:{port}",
                node_tls_name(TARGET.node_id),
                anonymous_channel_credentials(ca),
                max_message_bytes=4 << 20,
            )
        if service == "RegistryService":
            access = ACCESS.get(f"/certfed.v1.RegistryService/{method_name}")
            if access is Access.ADMIN:
                paths = self.local.registry_paths
                credentials = grpc.ssl_channel_credentials(
                    root_certificates=ca,
                    private_key=paths.admin_key("admin").read_bytes(),
                    certificate_chain=paths.admin_certificate("admin").read_bytes(),
                )
            else:
                credentials = self._caller_credentials(ca)
            return secure_channel(
                self.local.registry_endpoint,
                REGISTRY_TLS_NAME,
                credentials,
                max_message_bytes=4 << 20,
            )
        return secure_channel(
            f"127.0.0.1:{self.local.nodes[TARGET.node_id].federation_port}",
            node_tls_name(TARGET.node_id),
            self._caller_credentials(ca),
            max_message_bytes=4 << 20,
        )

    def _caller_credentials(self, ca: bytes) -> grpc.ChannelCredentials:
        keys = self.local.nodes[CALLER.node_id].config.data_dir / "keys"
        return grpc.ssl_channel_credentials(
            root_certificates=ca,
            private_key=(keys / "tls.key").read_bytes(),
            certificate_chain=(keys / "tls.pem").read_bytes(),
        )

    def metadata(self, service: str) -> tuple[tuple[str, str], ...]:
        if service == "DeskService":
            return (("authorization", f"Bearer {self.operator_token}"),)
        return ()


def row_counts(url: str) -> dict[str, int]:
    engine = sqlalchemy.create_engine(url)
    try:
        with engine.connect() as connection:
            names = sqlalchemy.inspect(connection).get_table_names()
            return {
                name: connection.execute(
                    sqlalchemy.text(f'SELECT COUNT(*) FROM "{name}"')  # noqa: S608 - table names from the schema
                ).scalar_one()
                for name in names
                if name not in BACKGROUND_TABLES
            }
    finally:
        engine.dispose()


def desk_evaluations(url: str) -> int:
    """The registry's audit records of locator evaluations made for the target node."""
    engine = sqlalchemy.create_engine(url)
    try:
        with engine.connect() as connection:
            count: int = connection.execute(
                sqlalchemy.text(DESK_EVALUATIONS),
                {"action": EVALUATE_ACTION, "actor": f"node:{TARGET.node_id}"},
            ).scalar_one()
            return count
    finally:
        engine.dispose()


def chain_pending_audit(url: str) -> None:
    """Chain the audit records earlier calls queued, so that the node's sequencer moving them
    from audit_pending to audit_record is not taken for a change made by this RPC's calls."""
    engine = db.create_engine_for(url)
    try:
        audit.flush(engine)
    finally:
        engine.dispose()


def _healthy(local: LocalFederation) -> None:
    """The registry and the node answer health checks (the node's federation port is served by
    the same server as its desk port, so the desk port's answer covers both)."""
    ca = local.registry_paths.trust_ca_certificate.read_bytes()
    desk = f"127.0.0.1:{local.nodes[TARGET.node_id].desk_port}"
    for endpoint, name in (
        (local.enrol_endpoint, REGISTRY_TLS_NAME),
        (desk, node_tls_name(TARGET.node_id)),
    ):
        channel = secure_channel(
            endpoint, name, anonymous_channel_credentials(ca), max_message_bytes=1 << 20
        )
        try:
            answer = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(), timeout=5
            )
        finally:
            channel.close()
        assert answer.status == health_pb2.HealthCheckResponse.SERVING, endpoint


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Target]:
    workdir: Path = tmp_path_factory.mktemp("fuzz")
    with LocalFederation(workdir) as local:
        local.start_registry()
        local.add_node(CALLER, start=False)
        local.add_node(TARGET, settings=NODE_SETTINGS)
        node_url = local.nodes[TARGET.node_id].config.effective_database_url
        engine = db.create_engine_for(node_url)
        try:
            with db.session_scope(engine) as session:
                _operator, token = create_operator(
                    session,
                    label="fuzz",
                    roles=[OperatorRole.CLERK, OperatorRole.REVIEWER, OperatorRole.ADMIN],
                    actor="host:fuzz",
                    now=datetime.now(UTC),
                )
        finally:
            engine.dispose()
        registry_url = f"sqlite:///{local.registry_paths.default_database}"
        _await_first_cosignature(registry_url, TARGET.node_id)
        yield Target(local, token, node_url, registry_url)


def _await_first_cosignature(registry_url: str, node_id: str, timeout_s: float = 60.0) -> None:
    """Wait for the checkpoint a node has cosigned once after it starts (to learn what the
    witness holds): the registry keeps it, and rows counted before it would change under the
    first method fuzzed, whatever that method's callers sent."""
    engine = sqlalchemy.create_engine(registry_url)
    deadline = time.monotonic() + timeout_s
    try:
        while True:
            with engine.connect() as connection:
                cosigned = connection.execute(
                    sqlalchemy.text("SELECT COUNT(*) FROM witnessed_checkpoint WHERE origin = :o"),
                    {"o": LOG_ORIGIN_PREFIX + node_id},
                ).scalar_one()
            if cosigned:
                return
            assert time.monotonic() < deadline, f"{node_id} had no checkpoint cosigned"
            time.sleep(0.1)
    finally:
        engine.dispose()


def _send(
    rpc: Any, target: Target, channel: grpc.Channel, method: Any, payload: Any
) -> tuple[grpc.StatusCode, str]:
    for _ in range(5):
        code, details = rpc.call(
            channel, method, payload, target.metadata(method.service), timeout=2.0
        )
        if code is not grpc.StatusCode.RESOURCE_EXHAUSTED or "retry in" not in details:
            return code, details
        time.sleep(0.25)  # a rate limit of the registry: wait as told, then send it again
    return code, details


def test_every_rpc_survives_generated_mutated_and_garbage_input(
    target: Target, rpc: Any, method: Any
) -> None:
    seeds = _seeds()
    generated = message_strategy(method.request_class.DESCRIPTOR)
    messages = (
        st.one_of(generated, mutated(seeds[method.name])) if method.name in seeds else generated
    )
    raw = st.one_of(
        st.binary(max_size=200),
        st.tuples(generated, st.integers(1, 50)).map(
            lambda pair: pair[0].SerializeToString()[: -pair[1]] or b"\xff"
        ),
    )
    chain_pending_audit(target.node_url)
    before = {"node": row_counts(target.node_url), "registry": row_counts(target.registry_url)}
    evaluations_before = desk_evaluations(target.registry_url)
    outcomes: dict[grpc.StatusCode, int] = {}
    unexpected: list[str] = []
    channel = target.channel(method.service, method.name)

    def check(payload: Any) -> None:
        code, details = _send(rpc, target, channel, method, payload)
        outcomes[code] = outcomes.get(code, 0) + 1
        if code not in EXPECTED | ALSO_EXPECTED.get(method.label, frozenset()):
            shown = payload if isinstance(payload, bytes) else payload.SerializeToString()
            unexpected.append(f"{code.name} ({details}) for {shown[:120]!r}")

    @settings(
        max_examples=EXAMPLES_PER_RPC,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(messages)
    def structured(message: _message.Message) -> None:
        check(message)

    @settings(
        max_examples=RAW_EXAMPLES_PER_RPC,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(raw)
    def garbage(payload: bytes) -> None:
        check(payload)

    try:
        structured()
        garbage()
    finally:
        channel.close()
    assert not unexpected, f"{method.label}:\n" + "\n".join(unexpected[:10])
    _healthy(target.local)
    if outcomes.get(grpc.StatusCode.OK):
        # What a valid call queued (a locator to publish) is delivered before counting.
        target.local.await_outbox_drained(TARGET.node_id)
    after = {"node": row_counts(target.node_url), "registry": row_counts(target.registry_url)}
    evaluated = desk_evaluations(target.registry_url) - evaluations_before
    if method.service == "DeskService":
        after["registry"]["audit_event"] -= evaluated
        days = after["registry"].get("locator_evaluation_day", 0)
        if evaluated and days == before["registry"].get("locator_evaluation_day", 0) + 1:
            after["registry"]["locator_evaluation_day"] = days - 1
    for store in before:
        for table, count in before[store].items():
            now_count = after[store].get(table, 0)
            if table in WRITTEN_WHEN_REFUSED.get(method.label, ()):
                continue
            if not outcomes.get(grpc.StatusCode.OK):
                assert now_count == count, (
                    f"{store}.{table} changed ({count} -> {now_count}) during {method.label}, "
                    f"though no call succeeded: {outcomes}"
                )
