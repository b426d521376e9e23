"""A node backed up while running and restored from that backup never forks its log.

Real processes: the registry (and its witness), Qingdao (a residence agency, the issuer) and
Lanzhou (a paying office that follows Qingdao's log). Qingdao is backed up with
`certfed node backup`, issues more attestations, and is then restored from the older backup with
`certfed node restore`. The restored node learns from the witness that it lost cosigned entries,
refuses to issue (FAILED_PRECONDITION, `certfed.log` NOT_SERVING) until it has them back, and gets
them back either by itself from Lanzhou's verified copy or from an export file an administrator
brings (`certfed node export-log`, `certfed node recover-log`). Then it issues again, and the
witness records no fork.

The file path runs on SQLite and on PostgreSQL (pg_dump and pg_restore, from PATH or the pgserver
package); the automatic path and a current backup on SQLite.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from sqlmodel import Session, func, select

from certfed.v1 import common_pb2, desk_pb2
from cli.backup_commands import PASSPHRASE_ENV
from cli.launcher import LocalFederation, wait_until
from federation.database import reader
from federation.timestamps import to_timestamp
from federation.transport import anonymous_channel_credentials, node_tls_name, secure_channel
from federation_node.store import db, log_store, sync_store
from federation_node.tlog.transparency import LOG_HEALTH
from registry import db as registry_db
from registry.tables import WitnessFork
from tests.helpers.commands import certfed
from tests.helpers.evidence import upload_capture
from tests.helpers.identities import resident, resident_id
from tests.helpers.nodes import LANZHOU as PAYING
from tests.helpers.nodes import QINGDAO_AGENCY as ISSUER

PASSPHRASE = "correct horse battery staple"
DEADLINE_S = 60.0


class Offices:
    """The federation of one test and what the test does through it."""

    def __init__(self, local: LocalFederation, workdir: Path) -> None:
        self.local = local
        self.workdir = workdir
        self._serial = 0

    def config_path(self, node_id: str) -> str:
        return str(self.local.nodes[node_id].config_path)

    def record(self) -> str:
        """A request from Lanzhou, certified (recorded, not yet approved) at Qingdao."""
        self._serial += 1
        person = resident(resident_id("620102", date(1944, 4, 4), self._serial))
        with self.local.desk(PAYING.node_id) as desk:
            beneficiary = desk.stub.RegisterBeneficiary(
                desk_pb2.RegisterBeneficiaryRequest(identity=person, residence_region="370202")
            ).beneficiary
            request_id = desk.stub.RequestCertification(
                desk_pb2.RequestCertificationRequest(
                    beneficiary_id=beneficiary.beneficiary_id,
                    deadline=to_timestamp(datetime.now(UTC) + timedelta(days=20)),
                )
            ).request.request_id
        with self.local.desk(ISSUER.node_id) as desk:
            lookup = desk_pb2.GetAssistanceRequestRequest(request_id=request_id)

            def arrived() -> bool:
                try:
                    desk.stub.GetAssistanceRequest(lookup)
                except grpc.RpcError as error:
                    if error.code() == grpc.StatusCode.NOT_FOUND:
                        return False
                    raise
                return True

            wait_until(arrived, DEADLINE_S, "the request in Qingdao's inbox")
            certification_id: str = desk.stub.RecordCertification(
                desk_pb2.RecordCertificationRequest(
                    request_id=request_id,
                    method=common_pb2.CERTIFICATION_METHOD_ON_SITE,
                    outcome=common_pb2.CERTIFICATION_OUTCOME_ALIVE,
                    observed_at=to_timestamp(datetime.now(UTC)),
                    evidence_digests=[upload_capture(desk, self._serial)],
                )
            ).certification.certification_id
        return certification_id

    def approve(self, certification_id: str) -> None:
        with self.local.desk(ISSUER.node_id, "reviewer") as desk:
            desk.stub.ApproveCertification(
                desk_pb2.ApproveCertificationRequest(certification_id=certification_id)
            )

    def issue(self) -> None:
        self.approve(self.record())

    def _read(self, node_id: str, read: Callable[[Session], int]) -> int:
        engine = db.create_engine_for(self.local.nodes[node_id].config.effective_database_url)
        try:
            with Session(reader(engine)) as session:
                return read(session)
        finally:
            engine.dispose()

    def log_size(self) -> int:
        return self._read(ISSUER.node_id, lambda session: log_store.head(session).tree_size)

    def cosigned_size(self) -> int:
        def read(session: Session) -> int:
            latest = log_store.latest_checkpoint(session)
            return 0 if latest is None else latest.tree_size

        return self._read(ISSUER.node_id, read)

    def witnessed_size(self) -> int:
        return self._read(
            ISSUER.node_id, lambda session: log_store.witness_state(session).witnessed_size
        )

    def copy_size(self) -> int:
        def read(session: Session) -> int:
            copy = sync_store.head(session, ISSUER.node_id)
            return 0 if copy is None else copy.tree_size

        return self._read(PAYING.node_id, read)

    def await_cosigned(self, size: int, *, copied: bool = False) -> None:
        wait_until(lambda: self.cosigned_size() >= size, DEADLINE_S, f"checkpoint of {size}")
        if copied:
            wait_until(lambda: self.copy_size() >= size, DEADLINE_S, f"Lanzhou's copy of {size}")

    def log_health(self) -> int:
        """The `certfed.log` health status; -1 while the desk port does not answer."""
        handle = self.local.nodes[ISSUER.node_id]
        channel = secure_channel(
            f"127.0.0.1:{handle.desk_port}",
            node_tls_name(ISSUER.node_id),
            anonymous_channel_credentials(handle.config.ca_certificate.read_bytes()),
            max_message_bytes=1 << 20,
        )
        with channel:
            try:
                answer = health_pb2_grpc.HealthStub(channel).Check(
                    health_pb2.HealthCheckRequest(service=LOG_HEALTH), timeout=5
                )
            except grpc.RpcError as error:
                if error.code() != grpc.StatusCode.UNAVAILABLE:
                    raise
                return -1
        return int(answer.status)

    def forks(self) -> int:
        engine = registry_db.create_engine_for(self.local.registry_database_url)
        try:
            with Session(engine) as session:
                return int(session.exec(select(func.count()).select_from(WitnessFork)).one())
        finally:
            engine.dispose()

    def backup(self, name: str) -> Path:
        folder = self.workdir / name
        done = certfed(
            "node",
            "backup",
            "--config",
            self.config_path(ISSUER.node_id),
            "--out",
            str(folder),
            env={PASSPHRASE_ENV: PASSPHRASE},
        )
        assert done.returncode == 0, done.stdout + done.stderr
        return folder

    def restore(self, folder: Path) -> None:
        """Stop Qingdao, restore it from `folder`, start it again."""
        self.local.stop_node(ISSUER.node_id)
        done = certfed(
            "node",
            "restore",
            "--config",
            self.config_path(ISSUER.node_id),
            "--from",
            str(folder),
            env={PASSPHRASE_ENV: PASSPHRASE},
        )
        assert done.returncode == 0, done.stdout + done.stderr
        self.local.start_node(ISSUER.node_id)


SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


def _offices(local: LocalFederation, workdir: Path) -> Iterator[Offices]:
    with local:
        local.start_registry()
        local.add_node(ISSUER)
        # No scheduled daily cycle: run at start, it would race `record` and ask on its own for
        # the person just registered (due at once, having no valid_until).
        local.add_node(PAYING, settings={"follow": [ISSUER.node_id], "cycle_hour_utc": -1})
        yield Offices(local, workdir)


@pytest.fixture
def offices(tmp_path: Path) -> Iterator[Offices]:
    yield from _offices(LocalFederation(tmp_path / "federation"), tmp_path)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def offices_on(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Offices]:
    """The same federation once on SQLite and once on PostgreSQL."""
    factory: Callable[[str], str] | None = None
    if request.param == "postgres":
        make: Callable[[], str] = request.getfixturevalue("postgres_url_factory")

        def factory(_name: str) -> str:
            return make()

    local = LocalFederation(tmp_path / "federation", database_url_for=factory)
    yield from _offices(local, tmp_path)


def test_a_node_restored_from_an_older_backup_gets_its_lost_entries_back_from_a_follower(
    offices: Offices,
) -> None:
    offices.issue()
    offices.await_cosigned(1, copied=True)
    folder = offices.backup("backup-1")
    offices.issue()
    offices.issue()
    offices.await_cosigned(3, copied=True)

    offices.restore(folder)

    # The witness says 3, the restored log holds 1; Lanzhou's verified copy gives back 2.
    wait_until(lambda: offices.log_size() == 3, DEADLINE_S, "the lost entries recovered")
    wait_until(lambda: offices.log_health() == SERVING, DEADLINE_S, "certfed.log SERVING")
    offices.issue()
    offices.await_cosigned(4, copied=True)
    assert offices.forks() == 0


def test_a_restored_node_refuses_to_issue_until_an_export_brings_back_its_lost_entries(
    offices_on: Offices,
) -> None:
    offices = offices_on
    offices.issue()
    pending = offices.record()
    offices.await_cosigned(1, copied=True)
    folder = offices.backup("backup-1")
    offices.issue()
    offices.await_cosigned(2, copied=True)
    export = offices.workdir / "qingdao-log.jsonl"
    done = certfed(
        "node",
        "export-log",
        "--config",
        offices.config_path(PAYING.node_id),
        "--origin",
        ISSUER.node_id,
        "--out",
        str(export),
    )
    assert done.returncode == 0, done.stdout + done.stderr
    # No follower to ask: the administrator's export is the only way back.
    offices.local.stop_node(PAYING.node_id)

    offices.local.stop_node(ISSUER.node_id)
    wrong = certfed(
        "node",
        "restore",
        "--config",
        offices.config_path(ISSUER.node_id),
        "--from",
        str(folder),
        env={PASSPHRASE_ENV: "not the passphrase at all"},
    )
    assert wrong.returncode != 0
    assert "passphrase" in wrong.stdout + wrong.stderr
    offices.restore(folder)

    wait_until(lambda: offices.witnessed_size() == 2, DEADLINE_S, "the witness's size learned")
    assert offices.log_size() == 1
    wait_until(lambda: offices.log_health() == NOT_SERVING, DEADLINE_S, "certfed.log down")
    with pytest.raises(grpc.RpcError) as refused:
        offices.approve(pending)
    assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "the registry witness cosigned 2" in str(refused.value.details())

    done = certfed(
        "node",
        "recover-log",
        "--config",
        offices.config_path(ISSUER.node_id),
        "--from",
        str(export),
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert offices.log_size() == 2
    wait_until(lambda: offices.log_health() == SERVING, DEADLINE_S, "certfed.log SERVING")
    offices.approve(pending)
    offices.await_cosigned(3)
    assert offices.forks() == 0


def test_a_node_restored_from_a_current_backup_issues_once_the_witness_agrees(
    offices: Offices,
) -> None:
    offices.issue()
    offices.await_cosigned(1)
    pending = offices.record()
    folder = offices.backup("backup-current")

    offices.restore(folder)

    wait_until(lambda: offices.log_health() == SERVING, DEADLINE_S, "certfed.log SERVING")
    offices.approve(pending)
    offices.await_cosigned(2)
    assert offices.forks() == 0
