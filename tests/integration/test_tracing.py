"""Tracing across offices: one assistance round trip between two real node processes is one trace.

The registry and both nodes run with `OTEL_TRACES_EXPORTER=console`, so each process writes its
finished spans, one JSON object a line, to standard output (its log file here). The test makes
the round trip call by call (Lanzhou asks, Qingdao records and approves, Lanzhou receives the
attestation) and reads the spans back from both logs.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from certfed.v1 import common_pb2, desk_pb2
from cli.launcher import LocalFederation, wait_until
from federation import tracing
from federation.timestamps import to_timestamp
from tests.helpers.evidence import upload_capture
from tests.helpers.identities import resident, resident_id
from tests.helpers.nodes import LANZHOU as PAYING
from tests.helpers.nodes import QINGDAO_AGENCY as AGENCY

Span = dict[str, Any]


@pytest.fixture
def federation(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[LocalFederation]:
    # This test process itself stays untraced whatever the variables say; its children trace.
    tracing.configure("certfed-tests", environ={})
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "console")
    with LocalFederation(tmp_path) as local:
        local.start_registry()
        local.add_node(PAYING)
        local.add_node(AGENCY)
        yield local


def spans(log: Path) -> list[Span]:
    """The spans a process wrote, among its JSON log lines."""
    found = []
    for line in log.read_text(encoding="utf-8").splitlines():
        if not line.startswith('{"name"'):
            continue
        span: Span = json.loads(line)
        if "context" in span and "kind" in span:
            found.append(span)
    return found


def round_trip(local: LocalFederation) -> str:
    """Lanzhou asks Qingdao to certify a retiree; Qingdao records and approves. The request id."""
    person = resident(resident_id("620102", date(1943, 4, 5), 11), "Tracing Test")
    with local.desk(PAYING.node_id) as desk:
        beneficiary = desk.stub.RegisterBeneficiary(
            desk_pb2.RegisterBeneficiaryRequest(identity=person, residence_region="370202")
        ).beneficiary
        request_id: str = desk.stub.RequestCertification(
            desk_pb2.RequestCertificationRequest(
                beneficiary_id=beneficiary.beneficiary_id,
                deadline=to_timestamp(datetime.now(UTC) + timedelta(days=20)),
            )
        ).request.request_id
    inbound = desk_pb2.GetAssistanceRequestRequest(request_id=request_id)
    with local.desk(AGENCY.node_id) as desk:

        def arrived() -> bool:
            try:
                desk.stub.GetAssistanceRequest(inbound)
            except Exception:
                return False
            return True

        wait_until(arrived, 30, "the request at the agency")
        certification_id = desk.stub.RecordCertification(
            desk_pb2.RecordCertificationRequest(
                request_id=request_id,
                method=common_pb2.CERTIFICATION_METHOD_ON_SITE,
                outcome=common_pb2.CERTIFICATION_OUTCOME_ALIVE,
                observed_at=to_timestamp(datetime.now(UTC) - timedelta(minutes=1)),
                evidence_digests=[upload_capture(desk)],
            )
        ).certification.certification_id
    with local.desk(AGENCY.node_id, "reviewer") as desk:
        desk.stub.ApproveCertification(
            desk_pb2.ApproveCertificationRequest(certification_id=certification_id)
        )
    outbound = desk_pb2.GetAssistanceRequestRequest(request_id=request_id)
    with local.desk(PAYING.node_id) as desk:
        wait_until(
            lambda: (
                desk.stub.GetAssistanceRequest(outbound).request.status
                == common_pb2.ASSISTANCE_STATUS_COMPLETED
            ),
            30,
            "the attestation back at the paying office",
        )
    return request_id


def test_one_assistance_round_trip_across_two_offices_is_one_trace(
    federation: LocalFederation,
) -> None:
    request_id = round_trip(federation)
    paying_log = federation.nodes[PAYING.node_id].log_path
    agency_log = federation.nodes[AGENCY.node_id].log_path

    expected = {
        ("lanzhou", "certfed.v1.DeskService/RequestCertification"),
        ("lanzhou", "outbox.deliver request_assistance"),
        ("lanzhou", "certfed.v1.FederationService/RequestAssistance"),
        ("qingdao", "certfed.v1.FederationService/RequestAssistance"),
        ("qingdao", "certification.approve"),
        ("qingdao", "outbox.deliver deliver_logged_attestation"),
        ("qingdao", "certfed.v1.FederationService/DeliverAttestation"),
        ("lanzhou", "certfed.v1.FederationService/DeliverAttestation"),
    }

    def one_trace() -> list[Span] | None:
        paying = spans(paying_log)
        asked = [s for s in paying if s["name"] == "certfed.v1.DeskService/RequestCertification"]
        if len(asked) != 1:
            return None
        trace_id = asked[0]["context"]["trace_id"]
        in_trace = [s for s in paying + spans(agency_log) if s["context"]["trace_id"] == trace_id]
        names = {(s["resource"]["attributes"]["certfed.node_id"], s["name"]) for s in in_trace}
        return in_trace if expected <= names else None

    # A client span ends in the call's done callback, a moment after the server's span.
    in_trace = wait_until(one_trace, 30, "every span of the round trip in one trace")
    paying, agency = spans(paying_log), spans(agency_log)
    # Qingdao's server span is the child of Lanzhou's client span: the context crossed the wire.
    [client] = [
        s
        for s in in_trace
        if s["kind"] == "SpanKind.CLIENT" and s["name"].endswith("/RequestAssistance")
    ]
    [server] = [
        s
        for s in agency
        if s["kind"] == "SpanKind.SERVER" and s["name"].endswith("/RequestAssistance")
    ]
    assert server["parent_id"] == client["context"]["span_id"]
    # The approval is linked to the reviewer's own desk call, a trace of its own.
    [approval] = [s for s in in_trace if s["name"] == "certification.approve"]
    [approve_call] = [s for s in agency if s["name"].endswith("/ApproveCertification")]
    assert approval["links"][0]["context"]["span_id"] == approve_call["context"]["span_id"]
    # No span names or describes the person: ids and names stay out of the telemetry.
    for span in paying + agency:
        text = json.dumps(span)
        assert "Tracing Test" not in text
        assert resident_id("620102", date(1943, 4, 5), 11) not in text
        assert request_id not in text
