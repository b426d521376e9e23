"""Enrolment cannot be squatted, and two nodes of one region are routed by configuration.

Enrol needs no credential, so anyone can apply under any node id and declare any region. The
attacker here is a squatter running `certfed node init` and `certfed node enrol` like a genuine
office, against a real registry process: it applies first under the id of an office that has not
enrolled yet, or applies for a region another office serves. The administrator approves with
`certfed registry approve` and the fingerprints the genuine office sent out of band. Each test
asserts the refusal code and message and that nothing changed: the application stays pending,
the directory keeps its version, no certificate reaches the squatter and requests keep going
where they went. Routing between two nodes the administrator deliberately approved for one
region follows the paying office's node.toml, never the order of the node ids.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import grpc
import pytest
import sqlalchemy as sa

from certfed.v1 import common_pb2, desk_pb2, directory_pb2
from cli.launcher import LocalFederation, NodeSpec, wait_until
from federation.timestamps import to_timestamp
from federation_node.config import render_node_config
from registry.db import create_engine_for
from tests.helpers.commands import certfed
from tests.helpers.identities import resident, resident_id
from tests.helpers.nodes import LANZHOU as PAYING
from tests.helpers.nodes import QINGDAO_AGENCY as SERVING
from tests.helpers.nodes import database_url_for

FINGERPRINT = re.compile(r"(signing key|TLS key):\s+((?:[0-9A-F]{4} ){15}[0-9A-F]{4})$", re.M)
SECOND_AGENCY = NodeSpec("qingdao-west", "Qingdao west centre", ("370200",), ("residence_agency",))


@pytest.fixture(params=["postgres"])
def local(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[LocalFederation]:
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("CERTFED_NODE_CYCLE_HOUR_UTC", "-1")
        with LocalFederation(
            tmp_path / "federation", database_url_for=database_url_for(request)
        ) as running:
            running.start_registry()
            yield running


def applicant(local: LocalFederation, workdir: Path, spec: NodeSpec) -> Path:
    """A would-be office's node.toml and trust files, as the office writes them."""
    trust = workdir / "trust"
    trust.mkdir(parents=True)
    paths = local.registry_paths
    shutil.copyfile(paths.trust_root_public_key, trust / "root.pub")
    shutil.copyfile(paths.trust_ca_certificate, trust / "ca.pem")
    shutil.copyfile(paths.trust_witness_vkey, trust / "witness.vkey")
    config = workdir / "node.toml"
    values: dict[str, object] = {
        "node_id": spec.node_id,
        "display_name": spec.display_name,
        "region_codes": list(spec.region_codes),
        "roles": list(spec.roles),
        "endpoint": "127.0.0.1:7999",
        "registry_endpoint": local.registry_endpoint,
        "registry_enrol_endpoint": local.enrol_endpoint,
        "data_dir": ".",
    }
    config.write_text(render_node_config(values), encoding="utf-8")
    return config


def printed_fingerprints(output: str) -> dict[str, str]:
    """The fingerprints `certfed node init` or `node enrol` printed, by key."""
    found = dict(FINGERPRINT.findall(output))
    assert set(found) == {"signing key", "TLS key"}, output
    return found


def init(config: Path) -> dict[str, str]:
    created = certfed("node", "init", "--config", str(config))
    assert created.returncode == 0, created.stdout + created.stderr
    return printed_fingerprints(created.stdout)


def enrol(config: Path) -> subprocess.CompletedProcess[str]:
    return certfed("node", "enrol", "--config", str(config))


def approve(
    local: LocalFederation, node_id: str, fingerprints: dict[str, str], *extra: str
) -> subprocess.CompletedProcess[str]:
    return certfed(
        "registry", "approve", node_id,
        "--signing-key-fingerprint", fingerprints["signing key"],
        "--tls-key-fingerprint", fingerprints["TLS key"],
        "--config", str(local.registry_paths.config_file),
        *extra,
    )  # fmt: skip


def directory_version(local: LocalFederation) -> int:
    directory = directory_pb2.Directory()
    directory.ParseFromString(local.fetch_directory().payload)
    return int(directory.version)


def status_of(local: LocalFederation, node_id: str) -> int:
    with local.admin() as admin:
        return next(node.status for node in admin.list_nodes() if node.node_id == node_id)


def test_approval_with_fingerprints_other_than_the_offices_is_refused(
    local: LocalFederation, tmp_path: Path
) -> None:
    genuine = applicant(local, tmp_path / "genuine", SERVING)
    squatter = applicant(local, tmp_path / "squatter", SERVING)
    genuine_fingerprints = init(genuine)
    squatter_fingerprints = init(squatter)
    applied = enrol(squatter)
    assert applied.returncode == 3, applied.stdout + applied.stderr
    assert printed_fingerprints(applied.stdout) == squatter_fingerprints
    assert enrol(genuine).returncode not in (0, 3)  # the squatter holds the node id
    version = directory_version(local)

    listing = certfed("registry", "list", "--config", str(local.registry_paths.config_file))
    assert f"signing key: {squatter_fingerprints['signing key']}\n" in listing.stdout

    mixed = {**genuine_fingerprints, "signing key": squatter_fingerprints["signing key"]}
    for confirmed, key in ((genuine_fingerprints, "signing key"), (mixed, "TLS key")):
        refused = approve(local, "qingdao", confirmed)
        assert refused.returncode == 1
        assert refused.stderr.startswith("error: FAILED_PRECONDITION: "), refused.stderr
        assert f"the {key} fingerprint you confirmed is not the one" in refused.stderr
        assert "do not approve" in refused.stderr

    assert status_of(local, "qingdao") == common_pb2.NODE_STATUS_PENDING
    assert directory_version(local) == version
    again = enrol(squatter)
    assert again.returncode == 3
    assert not (squatter.parent / "keys" / "tls.pem").exists()


def test_a_second_node_for_a_served_region_and_role_needs_the_explicit_flag(
    local: LocalFederation, tmp_path: Path
) -> None:
    local.add_node(SERVING)
    local.add_node(PAYING)
    version = directory_version(local)
    confirmed: dict[str, dict[str, str]] = {}
    squatters = {
        "qingdao-2": ("370200", "370200 as residence_agency by node qingdao"),
        "laoshan": ("370212", "370212 as residence_agency by node qingdao (through 370200)"),
    }
    for node_id, (region, shared) in squatters.items():
        spec = NodeSpec(node_id, "Squatter", (region,), ("residence_agency",))
        config = applicant(local, tmp_path / node_id, spec)
        init(config)
        confirmed[node_id] = printed_fingerprints(enrol(config).stdout)
        refused = approve(local, node_id, confirmed[node_id])
        assert refused.returncode == 1
        assert refused.stderr.startswith("error: FAILED_PRECONDITION: "), refused.stderr
        assert shared in refused.stderr
        assert "--allow-second-node-for-region" in refused.stderr
        assert status_of(local, node_id) == common_pb2.NODE_STATUS_PENDING
    assert directory_version(local) == version

    # Lanzhou's requests for a Laoshan resident still go to Qingdao.
    request_id = request_certification(local, register(local, "370212"))
    wait_until(lambda: request_id in inbox(local, "qingdao"), 30, "the request at Qingdao")

    # Said explicitly, the administrator may approve a second node.
    allowed = approve(local, "qingdao-2", confirmed["qingdao-2"], "--allow-second-node-for-region")
    assert allowed.returncode == 0, allowed.stderr
    assert status_of(local, "qingdao-2") == common_pb2.NODE_STATUS_ACTIVE
    engine = create_engine_for(local.registry_database_url)
    try:
        with engine.connect() as connection:
            detail = connection.execute(
                sa.text("SELECT detail FROM audit_event WHERE action = 'approve' AND node_id = :n"),
                {"n": "qingdao-2"},
            ).scalar_one()
    finally:
        engine.dispose()
    assert detail == "second node allowed for 370200 as residence_agency by node qingdao"


def test_routing_among_two_nodes_of_one_region_follows_configuration(
    local: LocalFederation,
) -> None:
    local.add_node(SERVING)
    local.add_node(SECOND_AGENCY, allow_second_node_for_region=True)
    local.add_node(PAYING)
    beneficiary_id = register(local, "370200")

    with pytest.raises(grpc.RpcError) as ambiguous:
        request_certification(local, beneficiary_id)
    assert ambiguous.value.code() is grpc.StatusCode.FAILED_PRECONDITION
    assert "qingdao, qingdao-west" in (ambiguous.value.details() or "")
    assert "[routing]" in (ambiguous.value.details() or "")
    assert inbox(local, "qingdao") == inbox(local, "qingdao-west") == set()

    config = local.nodes[PAYING.node_id].config_path
    with config.open("a", encoding="utf-8") as file:
        file.write('\n[routing]\n370200 = "qingdao-west"\n')
    local.restart_node(PAYING.node_id)

    request_id = request_certification(local, beneficiary_id)
    wait_until(lambda: request_id in inbox(local, "qingdao-west"), 30, "the request at west")
    assert request_id not in inbox(local, "qingdao")


def register(local: LocalFederation, residence: str) -> str:
    request = desk_pb2.RegisterBeneficiaryRequest(
        identity=resident(resident_id("620102", date(1950, 1, 1), len(local.nodes))),
        residence_region=residence,
        monthly_amount_fen=300_000,
        valid_until=to_timestamp(datetime.now(UTC) + timedelta(days=30)),
    )
    with local.desk(PAYING.node_id) as desk:
        beneficiary_id: str = desk.stub.RegisterBeneficiary(request).beneficiary.beneficiary_id
    return beneficiary_id


def request_certification(local: LocalFederation, beneficiary_id: str) -> str:
    with local.desk(PAYING.node_id) as desk:
        request_id: str = desk.stub.RequestCertification(
            desk_pb2.RequestCertificationRequest(
                beneficiary_id=beneficiary_id,
                deadline=to_timestamp(datetime.now(UTC) + timedelta(days=20)),
            )
        ).request.request_id
    return request_id


def inbox(local: LocalFederation, node_id: str) -> set[str]:
    with local.desk(node_id) as desk:
        requests = desk.stub.ListAssistanceRequests(
            desk_pb2.ListAssistanceRequestsRequest(direction=desk_pb2.DIRECTION_INBOUND)
        ).requests
    return {request.request_id for request in requests}
