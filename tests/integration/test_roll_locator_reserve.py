"""A roll import stops short of the registry's daily locator quota, leaving the office's reserve
for its federation work, and says when to go on.

A real registry whose quota is 2,500 evaluations a node a day and a real node that keeps 1,000
of them back from bulk imports (`locator_reserve`): a 2,000-row roll, imported in batches of
500, registers the first batches, is refused the batch that would leave fewer than 1,000
(RESOURCE_EXHAUSTED, until 00:00 UTC), and the importer stops with that message instead of
sleeping until midnight. A clerk can still register a person, and the registry still has the
office's evaluations for it.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest

from certfed.v1 import attestation_pb2, common_pb2, desk_pb2
from cli.bench.kit import resident_id
from cli.bench.roll import MAPPING, OFFICE, write_roll
from cli.launcher import LocalFederation
from cli.roll_import import import_roll_file
from federation.errors import UnavailableError
from federation.timestamps import to_timestamp

QUOTA = 2_500
RESERVE = 1_000
BATCH = 500


@pytest.fixture
def federation(tmp_path: Path) -> Iterator[LocalFederation]:
    with LocalFederation(tmp_path / "federation", log_level="warning") as local:
        local.registry_settings["locator_daily_quota"] = str(QUOTA)
        local.start_registry()
        local.add_node(OFFICE, settings={"locator_reserve": RESERVE})
        yield local


def _on_the_roll(federation: LocalFederation) -> int:
    with federation.desk(OFFICE.node_id) as desk:
        answer = desk.stub.GetReport(desk_pb2.GetReportRequest())
    return int(answer.beneficiaries)


def test_a_roll_import_stops_at_the_reserve_and_the_desk_goes_on(
    federation: LocalFederation, tmp_path: Path
) -> None:
    roll = tmp_path / "roll.csv"
    write_roll(roll, 2_000)
    with (
        federation.desk(OFFICE.node_id) as desk,
        pytest.raises(UnavailableError, match="locator_reserve") as stopped,
    ):
        import_roll_file(
            desk,
            roll,
            mapping_name=MAPPING,
            fmt=None,
            sheet=None,
            batch_size=BATCH,
            rejects_path=tmp_path / "rejects.csv",
            show_progress=False,
        )
    assert "00:00 UTC" in str(stopped.value)
    # 500 + 500 + 500 leave 1,000: the fourth batch would have left 500.
    assert _on_the_roll(federation) == 3 * BATCH
    # The clerk's registration uses the reserve.
    with federation.desk(OFFICE.node_id) as desk:
        registered = desk.stub.RegisterBeneficiary(
            desk_pb2.RegisterBeneficiaryRequest(
                identity=attestation_pb2.IdentityBundle(
                    identity_type=common_pb2.IDENTITY_TYPE_RESIDENT_ID,
                    identity_number=resident_id("440604", date(1941, 2, 3), 7),
                    full_name="陈小文",
                ),
                residence_region="440604",
                valid_until=to_timestamp(datetime.now(UTC) + timedelta(days=90)),
            )
        )
    assert registered.beneficiary.beneficiary_id
    assert _on_the_roll(federation) == 3 * BATCH + 1
