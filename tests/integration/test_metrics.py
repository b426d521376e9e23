"""Metrics and health probes of real processes: a registry and two nodes on 127.0.0.1, each with
`metrics_address` and `health_listen` on port 0, found through their ready files, scraped over
HTTP after a certification flow the test makes call by call, so the counts can be checked."""

from __future__ import annotations

import json
import re
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import grpc
import pytest
from prometheus_client.parser import text_string_to_metric_families

from certfed.v1 import common_pb2, desk_pb2
from cli.launcher import LocalFederation, wait_until
from federation.timestamps import to_timestamp
from tests.helpers.commands import certfed
from tests.helpers.evidence import upload_capture
from tests.helpers.identities import resident, resident_id
from tests.helpers.nodes import LANZHOU as PAYING
from tests.helpers.nodes import QINGDAO as RESIDENCE

OPERATIONS = {"metrics_address": "127.0.0.1:0", "health_listen": "127.0.0.1:0"}
DESK = "certfed.v1.DeskService"
FEDERATION = "certfed.v1.FederationService"
# A locator, key id or digest: a long run of hex digits.
HEX_RUN = re.compile(r"[0-9a-fA-F]{16,}")
# A resident ID (17 digits and a check character) or an HKID number.
IDENTITY_SHAPE = re.compile(r"\d{17}[\dXx]|[A-Za-z]{1,2}\d{6}\(?[\dAa]\)?")

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


@dataclass
class Flow:
    """What the test did, to compare with what the metrics say."""

    identity_number: str
    person_name: str
    beneficiary_id: str
    attestation_id: str
    # What the feed import answered, by outcome name (e.g. "applied").
    feed_outcomes: dict[str, int]


def scrape(url: str) -> Samples:
    with urllib.request.urlopen(url, timeout=10) as response:  # noqa: S310 - a loopback URL
        text = response.read().decode("utf-8")
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples[(name, frozenset(labels.items()))]


def ready_document(path: Path) -> dict[str, object]:
    def read() -> dict[str, object] | None:
        try:
            document: dict[str, object] = json.loads(path.read_text(encoding="utf-8"))
        except (FileNotFoundError, json.JSONDecodeError):
            return None
        return document

    return wait_until(read, 30, f"the ready file {path.name}")


@pytest.fixture(scope="module")
def federation(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalFederation]:
    local = LocalFederation(tmp_path_factory.mktemp("metrics"), max_backoff_s=0.5)
    local.registry_settings = dict(OPERATIONS)
    # The environment overrides node.toml; a cycle hour another module's fixture left in it
    # would keep the scheduler off, so the hour is set where it wins too.
    with pytest.MonkeyPatch.context() as patch, local:
        patch.setenv("CERTFED_NODE_CYCLE_HOUR_UTC", "0")
        local.start_registry()
        # Lanzhou follows qingdao's log and runs its daily cycle at the first check after start.
        local.add_node(PAYING, settings={**OPERATIONS, "follow": ["qingdao"], "cycle_hour_utc": 0})
        local.add_node(RESIDENCE, settings=OPERATIONS)
        yield local


def metrics_url(federation: LocalFederation, process: str) -> str:
    if process == "registry":
        path = federation.registry_paths.ready_file
    else:
        path = federation.nodes[process].config.data_dir / "node.ready.json"
    url = ready_document(path)["metrics"]
    assert isinstance(url, str)
    return url


@pytest.fixture(scope="module")
def flow(federation: LocalFederation) -> Flow:
    """Register, request, record, approve and apply one certification, one call each, plus one
    refused call; then wait until the paying office has applied it."""
    number = resident_id("620102", date(1948, 3, 9), 7)
    name = "Metrics Test Person"
    with federation.desk("lanzhou") as desk:
        beneficiary_id = desk.stub.RegisterBeneficiary(
            desk_pb2.RegisterBeneficiaryRequest(
                identity=resident(number, name), residence_region="370202"
            )
        ).beneficiary.beneficiary_id
        request_id = desk.stub.RequestCertification(
            desk_pb2.RequestCertificationRequest(
                beneficiary_id=beneficiary_id,
                deadline=to_timestamp(datetime.now(UTC) + timedelta(days=20)),
            )
        ).request.request_id
        with pytest.raises(grpc.RpcError) as refused:
            desk.stub.GetBeneficiary(
                desk_pb2.GetBeneficiaryRequest(beneficiary_id=str(uuid.uuid4()))
            )
        assert refused.value.code() is grpc.StatusCode.NOT_FOUND
    inbound = desk_pb2.ListAssistanceRequestsRequest(direction=desk_pb2.DIRECTION_INBOUND)
    with federation.desk("qingdao") as desk:
        wait_until(
            lambda: any(
                r.request_id == request_id
                for r in desk.stub.ListAssistanceRequests(inbound).requests
            ),
            30,
            "the request in qingdao's inbox",
        )
        certification_id = desk.stub.RecordCertification(
            desk_pb2.RecordCertificationRequest(
                request_id=request_id,
                method=common_pb2.CERTIFICATION_METHOD_VIDEO_CALL,
                outcome=common_pb2.CERTIFICATION_OUTCOME_ALIVE,
                observed_at=to_timestamp(datetime.now(UTC)),
                evidence_digests=[upload_capture(desk)],
            )
        ).certification.certification_id
    with federation.desk("qingdao", "reviewer") as desk:
        attestation_id = desk.stub.ApproveCertification(
            desk_pb2.ApproveCertificationRequest(certification_id=certification_id)
        ).certification.attestation_id
    federation.await_outbox_drained("qingdao")
    # Delivered is not applied: lanzhou holds a peer's attestation until an inclusion proof in
    # qingdao's witnessed log arrives, so wait until the validity it gives is on the record.
    applied = desk_pb2.GetBeneficiaryRequest(beneficiary_id=beneficiary_id)
    with federation.desk("lanzhou") as desk:
        wait_until(
            lambda: desk.stub.GetBeneficiary(applied).beneficiary.HasField("valid_until"),
            30,
            "lanzhou to apply qingdao's attestation",
        )
    return Flow(number, name, beneficiary_id, attestation_id, import_feed(federation, number))


def import_feed(federation: LocalFederation, certified_number: str) -> dict[str, int]:
    """One feed batch at lanzhou: an alive signal of a retiree whose validity runs out soon
    (given twice: the second is a duplicate, stored once), one of the retiree the flow has just
    certified (ignored: validity already runs past it) and one of a person lanzhou does not pay."""
    due_soon = resident_id("620102", date(1949, 6, 7), 5)
    with federation.desk("lanzhou") as desk:
        desk.stub.RegisterBeneficiary(
            desk_pb2.RegisterBeneficiaryRequest(
                identity=resident(due_soon, "Feed Test Person"),
                residence_region="620102",
                valid_until=to_timestamp(datetime.now(UTC) + timedelta(days=20)),
            )
        )

    def signal(record_id: str, number: str) -> desk_pb2.DataSignal:
        return desk_pb2.DataSignal(
            source="hospital-admissions",
            source_record_id=record_id,
            kind=desk_pb2.SIGNAL_KIND_HOSPITAL_ADMISSION,
            identity_type=common_pb2.IDENTITY_TYPE_RESIDENT_ID,
            identity_number=number,
            observed_at=to_timestamp(datetime.now(UTC) - timedelta(days=1)),
        )

    stranger = resident_id("620102", date(1950, 1, 2), 3)
    batch = [
        signal("r1", due_soon),
        signal("r1", due_soon),
        signal("r2", stranger),
        signal("r3", certified_number),
    ]
    # From the node's feed account, bound to the shipped mappings' sources.
    with federation.desk("lanzhou", "feed") as desk:
        results = desk.stub.RecordSignals(desk_pb2.RecordSignalsRequest(signals=batch)).results
    outcomes: dict[str, int] = {}
    for result in results:
        name = desk_pb2.SignalOutcome.Name(result.outcome).removeprefix("SIGNAL_OUTCOME_").lower()
        outcomes[name] = outcomes.get(name, 0) + 1
    assert outcomes == {"applied": 1, "duplicate": 1, "unknown_person": 1, "ignored": 1}
    return outcomes


def test_rpcs_are_counted_by_service_method_and_status_code(
    federation: LocalFederation, flow: Flow
) -> None:
    lanzhou = scrape(metrics_url(federation, "lanzhou"))
    qingdao = scrape(metrics_url(federation, "qingdao"))

    def handled(samples: Samples, service: str, method: str, code: str = "OK") -> float:
        return value(
            samples, "certfed_rpc_handled_total", service=service, method=method, code=code
        )

    # The flow's retiree, and the one the feed finds alive.
    assert handled(lanzhou, DESK, "RegisterBeneficiary") == 2
    assert handled(lanzhou, DESK, "RecordSignals") == 1
    assert handled(lanzhou, DESK, "RequestCertification") == 1
    assert handled(lanzhou, DESK, "GetBeneficiary", "NOT_FOUND") == 1
    assert handled(qingdao, DESK, "RecordCertification") == 1
    assert handled(qingdao, DESK, "ApproveCertification") == 1
    # The dispatchers' deliveries: the request to qingdao, the attestation back to lanzhou.
    assert handled(qingdao, FEDERATION, "RequestAssistance") >= 1
    assert handled(lanzhou, FEDERATION, "DeliverAttestation") >= 1
    # Every finished call is in the latency histogram once, whatever its code.
    for method in ("RegisterBeneficiary", "GetBeneficiary"):
        calls = sum(
            count
            for (name, labels), count in lanzhou.items()
            if name == "certfed_rpc_handled_total"
            and ("method", method) in labels
            and ("service", DESK) in labels
        )
        duration = value(lanzhou, "certfed_rpc_duration_seconds_count", service=DESK, method=method)
        assert duration == calls
        assert value(lanzhou, "certfed_rpc_duration_seconds_sum", service=DESK, method=method) > 0


def test_node_gauges_describe_the_log_the_outbox_and_the_directory(
    federation: LocalFederation, flow: Flow
) -> None:
    url = metrics_url(federation, "qingdao")

    def cosigned() -> Samples | None:
        samples = scrape(url)
        return samples if value(samples, "certfed_log_cosigned_size") >= 1 else None

    qingdao = wait_until(cosigned, 30, "a cosigned checkpoint of qingdao's log")
    assert value(qingdao, "certfed_attestations_issued_total", method="video_call") == 1
    assert value(qingdao, "certfed_log_size") == 1
    assert 0 <= value(qingdao, "certfed_log_checkpoint_age_seconds") < 60
    assert value(qingdao, "certfed_database_up") == 1
    directory_version = value(qingdao, "certfed_directory_version")
    assert directory_version >= 2  # one publication per approved node at least
    assert value(qingdao, "certfed_directory_stale") == 0
    assert 0 <= value(qingdao, "certfed_directory_age_seconds") < 3600
    assert (
        value(qingdao, "certfed_directory_expiry_timestamp_seconds") > datetime.now(UTC).timestamp()
    )
    tls_expiry = value(qingdao, "certfed_certificate_expiry_timestamp_seconds", certificate="tls")
    assert tls_expiry > (datetime.now(UTC) + timedelta(days=300)).timestamp()
    for destination in ("registry", "lanzhou"):
        assert value(qingdao, "certfed_outbox_pending_messages", destination=destination) == 0
        assert value(qingdao, "certfed_outbox_dead_letters", destination=destination) == 0
        age = value(qingdao, "certfed_outbox_oldest_pending_age_seconds", destination=destination)
        assert age == 0
    assert ("certfed_outbox_pending_messages", frozenset({("destination", "qingdao")})) not in (
        qingdao
    )
    # The node re-read its audit chain when it started and found it intact.
    assert value(qingdao, "certfed_audit_chain_problems") == 0
    full_check = value(qingdao, "certfed_audit_chain_full_check_timestamp_seconds")
    assert 0 < datetime.now(UTC).timestamp() - full_check < 3600
    assert value(qingdao, "certfed_audit_chain_unverified_records") >= 0


def test_registry_exports_the_directory_and_its_nodes(
    federation: LocalFederation, flow: Flow
) -> None:
    registry = scrape(metrics_url(federation, "registry"))
    assert value(registry, "certfed_registry_nodes", status="active") == 2
    assert value(registry, "certfed_registry_nodes", status="pending") == 0
    assert value(registry, "certfed_directory_version") >= 3
    assert value(registry, "certfed_database_up") == 1
    assert value(registry, "certfed_certificate_expiry_timestamp_seconds", certificate="ca") > 0
    assert (
        value(
            registry,
            "certfed_rpc_handled_total",
            service="certfed.v1.RegistryService",
            method="Enrol",
            code="OK",
        )
        == 2
    )
    assert value(registry, "process_resident_memory_bytes") > 0


def test_node_exports_feed_rows_sync_lag_and_the_daily_cycle(
    federation: LocalFederation, flow: Flow
) -> None:
    url = metrics_url(federation, "lanzhou")

    def synced() -> Samples | None:
        samples = scrape(url)
        entries = samples.get(("certfed_sync_verified_entries", frozenset({("origin", "qingdao")})))
        return samples if entries is not None and entries >= 1 else None

    lanzhou = wait_until(synced, 30, "lanzhou to verify qingdao's log entry")
    # Qingdao's log holds the one attestation of the flow.
    assert value(lanzhou, "certfed_sync_verified_entries", origin="qingdao") == 1
    assert 0 <= value(lanzhou, "certfed_sync_lag_seconds", origin="qingdao") < 120
    # Duplicates are answered, not stored: the counter holds what the feed changed.
    for outcome in ("applied", "unknown_person", "ignored"):
        rows = value(lanzhou, "certfed_feed_rows_total", outcome=outcome)
        assert rows == flow.feed_outcomes[outcome], outcome
    # The alive signal is a data-match attestation issued by lanzhou.
    assert value(lanzhou, "certfed_attestations_issued_total", method="data_match") == 1

    # The scheduler ran today's cycle once, from its first check after start (on a loaded
    # machine that first run may still be going, or retrying a busy database, at this point).
    def cycle_ran() -> Samples | None:
        samples = scrape(url)
        ran = samples.get(("certfed_cycle_runs_total", frozenset({("outcome", "ran")})))
        return samples if ran else None

    lanzhou = wait_until(cycle_ran, 60, "lanzhou's daily cycle to run")
    assert value(lanzhou, "certfed_cycle_runs_total", outcome="ran") == 1
    # A run that failed first (a busy database on a loaded machine) is timed and counted too.
    failed = value(lanzhou, "certfed_cycle_runs_total", outcome="failed")
    assert value(lanzhou, "certfed_cycle_duration_seconds_count") == 1 + failed
    assert value(lanzhou, "certfed_cycle_duration_seconds_sum") > 0
    assert value(lanzhou, "certfed_cycle_records_skipped_total") == 0
    last_run = value(lanzhou, "certfed_cycle_last_run_timestamp_seconds")
    assert datetime.now(UTC).timestamp() - 3600 < last_run <= datetime.now(UTC).timestamp()
    # No fork: the registry has no fork series for any node.
    registry = scrape(metrics_url(federation, "registry"))
    assert not [name for name, _ in registry if name == "certfed_witness_forks_recorded"]


def test_no_label_carries_an_identity_a_name_or_a_locator(
    federation: LocalFederation, flow: Flow
) -> None:
    for process in ("registry", "lanzhou", "qingdao"):
        for (name, labels), _ in scrape(metrics_url(federation, process)).items():
            for label, text in labels:
                where = f"{process}: {name}{{{label}={text!r}}}"
                assert not HEX_RUN.search(text), where
                assert not IDENTITY_SHAPE.search(text), where
                assert flow.identity_number not in text, where
                assert flow.person_name not in text, where
                assert flow.beneficiary_id not in text, where
                assert flow.attestation_id not in text, where


def test_a_message_waiting_for_a_stopped_peer_shows_in_the_outbox_gauges(
    federation: LocalFederation, flow: Flow
) -> None:
    federation.stop_node("qingdao")
    with federation.desk("lanzhou") as desk:
        desk.stub.RequestCertification(
            desk_pb2.RequestCertificationRequest(
                beneficiary_id=flow.beneficiary_id,
                deadline=to_timestamp(datetime.now(UTC) + timedelta(days=20)),
            )
        )
    lanzhou = scrape(metrics_url(federation, "lanzhou"))
    assert value(lanzhou, "certfed_outbox_pending_messages", destination="qingdao") == 1
    assert value(lanzhou, "certfed_outbox_oldest_pending_age_seconds", destination="qingdao") >= 0
    assert value(lanzhou, "certfed_outbox_dead_letters", destination="qingdao") == 0


def test_health_command_answers_through_the_probe_port_and_a_tls_port(
    federation: LocalFederation,
) -> None:
    ready = ready_document(federation.registry_paths.ready_file)
    probe = f"127.0.0.1:{ready['health']}"
    assert certfed("health", "--address", probe).returncode == 0
    serving = certfed("health", "--address", probe, "--service", "certfed.v1.RegistryService")
    assert serving.returncode == 0, serving.stdout
    assert "SERVING" in serving.stdout
    unknown = certfed("health", "--address", probe, "--service", "no.such.Service")
    assert unknown.returncode == 1
    tls = certfed(
        "health",
        "--address",
        federation.enrol_endpoint,
        "--ca",
        str(federation.registry_paths.trust_ca_certificate),
        "--tls-name",
        "registry.certfed",
    )
    assert tls.returncode == 0, tls.stdout
    # The plaintext probe port is the only one that answers without TLS.
    plain = certfed("health", "--address", federation.enrol_endpoint, "--timeout", "2")
    assert plain.returncode == 1
