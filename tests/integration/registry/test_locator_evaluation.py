"""EvaluateLocators against a real registry over mutual TLS: members get the registry's OPRF
evaluation (and so the same locators), bounded per call, rate-limited and counted against a
daily quota per node, every call audited with counts only; no one else gets an evaluation."""

from __future__ import annotations

import grpc
import pytest
from sqlmodel import Session

from certfed.v1.common_pb2 import NODE_STATUS_SUSPENDED
from federation.errors import CertfedError, InvalidInputError, PermissionDeniedError
from federation.transport import TlsMaterial
from federation_node.locators import Locators
from registry import audit_store
from registry.db import create_engine_for
from registry.locator_oprf import EVALUATE_ACTION, REFUSED_ACTION, load_locator_key
from signing import oprf
from signing.identity import IdentityKind
from signing.locator import locator_input, locator_with_key
from tests.integration.registry.conftest import EnrolledFactory, RunningRegistry

NUMBER = "11010519491231002X"


def _exhausted(match: str) -> pytest.RaisesContext[CertfedError]:
    """The refusal a node sees over its rate or quota: RESOURCE_EXHAUSTED, saying why."""
    return pytest.raises(CertfedError, match=match)


def _blinded(count: int) -> list[bytes]:
    return [oprf.blind(index.to_bytes(4, "big"))[1] for index in range(count)]


def _audit(registry: RunningRegistry, node_id: str) -> list[tuple[str, str]]:
    engine = create_engine_for(registry.config.effective_database_url)
    try:
        with Session(engine) as session:
            return [
                (event.action, event.detail)
                for event in audit_store.events_for(session, node_id)
                if "evaluate_locators" in event.action
            ]
    finally:
        engine.dispose()


def test_members_compute_the_registrys_locator_without_holding_its_key(
    registry: RunningRegistry, enrolled_node: EnrolledFactory
) -> None:
    _, foshan = enrolled_node("foshan")
    _, qingdao = enrolled_node("qingdao", region_codes=("370200",))
    expected = locator_with_key(
        load_locator_key(registry.config.paths), IdentityKind.RESIDENT_ID, NUMBER
    )
    assert Locators(foshan.evaluate_locators).subject_locator(IdentityKind.RESIDENT_ID, NUMBER) == (
        expected
    )
    assert Locators(qingdao.evaluate_locators).subject_locator(
        IdentityKind.RESIDENT_ID, NUMBER.lower()
    ) == (expected)
    # Audited per node, with counts: never the elements, never the number.
    [(action, detail)] = _audit(registry, "foshan")
    assert action == EVALUATE_ACTION
    assert detail.startswith("1 elements; 1 of ")
    _, data = locator_input(IdentityKind.RESIDENT_ID, NUMBER)
    assert NUMBER not in detail
    assert data.hex() not in detail


def test_what_is_not_a_blinded_element_and_an_oversized_batch_are_refused(
    registry: RunningRegistry, enrolled_node: EnrolledFactory
) -> None:
    _, node = enrolled_node("foshan")
    with pytest.raises(InvalidInputError, match="locator_batch_max of 1000"):
        node.evaluate_locators(_blinded(1001))
    with pytest.raises(InvalidInputError, match="not the encoding"):
        node.evaluate_locators([bytes(32)])
    with pytest.raises(InvalidInputError, match=r"blinded_elements\[1\]"):
        node.evaluate_locators([_blinded(1)[0], b"\x01" * 31])
    # A refused input is neither counted against the quota nor audited.
    assert _audit(registry, "foshan") == []


def test_no_one_but_an_active_member_gets_an_evaluation(
    registry: RunningRegistry, enrolled_node: EnrolledFactory
) -> None:
    paths = registry.config.paths
    admin = TlsMaterial.load(
        paths.admin_certificate("admin"), paths.admin_key("admin"), paths.ca_certificate
    )
    with registry.node_client(admin) as client, pytest.raises(PermissionDeniedError):
        client.evaluate_locators(_blinded(1))
    with registry.anonymous() as anonymous, pytest.raises(CertfedError):
        anonymous.evaluate_locators(_blinded(1))
    _, node = enrolled_node("foshan")
    with registry.admin() as administrator:
        administrator.set_status("foshan", NODE_STATUS_SUSPENDED, reason="test")
    with pytest.raises(PermissionDeniedError):
        node.evaluate_locators(_blinded(1))


@pytest.mark.parametrize(
    "registry_env",
    [{"CERTFED_REGISTRY_LOCATOR_RATE_PER_S": "0.01", "CERTFED_REGISTRY_LOCATOR_BURST": "1000"}],
)
def test_a_node_over_its_rate_is_refused_and_others_are_not(
    registry: RunningRegistry, enrolled_node: EnrolledFactory
) -> None:
    _, flooding = enrolled_node("foshan")
    _, other = enrolled_node("qingdao", region_codes=("370200",))
    # A roll import's bulk batches pass while the bucket holds them.
    assert len(flooding.evaluate_locators(_blinded(1000))) == 1000
    with _exhausted(r"faster than its rate of 0\.01 a second.*retry in") as over:
        flooding.evaluate_locators(_blinded(10))
    assert over.value.status is grpc.StatusCode.RESOURCE_EXHAUSTED
    assert len(other.evaluate_locators(_blinded(10))) == 10
    assert [action for action, _ in _audit(registry, "foshan")] == [EVALUATE_ACTION, REFUSED_ACTION]


@pytest.mark.parametrize("registry_env", [{"CERTFED_REGISTRY_LOCATOR_DAILY_QUOTA": "1200"}])
def test_a_node_past_its_daily_quota_is_refused_with_when_it_resets(
    registry: RunningRegistry, enrolled_node: EnrolledFactory
) -> None:
    _, node = enrolled_node("foshan")
    assert node.locators_left_today() is None  # no answer yet today
    assert len(node.evaluate_locators(_blinded(1000))) == 1000
    # The node remembers what the registry said is left (its bulk imports keep a reserve).
    assert node.locators_left_today() == 200
    with _exhausted("1000 of its 1200 locator evaluations") as over:
        node.evaluate_locators(_blinded(201))
    assert over.value.status is grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "00:00 UTC" in str(over.value)
    assert "locator_daily_quota" in str(over.value)
    # What is left of the quota can still be used, and no more.
    assert len(node.evaluate_locators(_blinded(200))) == 200
    with _exhausted("locator_daily_quota"):
        node.evaluate_locators(_blinded(1))
    actions = [action for action, _ in _audit(registry, "foshan")]
    assert actions == [EVALUATE_ACTION, REFUSED_ACTION, EVALUATE_ACTION, REFUSED_ACTION]
