"""Locators move from the old shared HMAC key to the registry's OPRF, and an erased person
leaves the registry's index: a registry and two paying offices as real processes.

The federation is first put in the state a deployment from before the OPRF is in: every
beneficiary's locator the HMAC of the shared key (their sealed identity bound to it), the
registry's index and its duplicate entitlements under those locators, the key file on each
node. `certfed node relocate` at each office, then the nodes running again, must leave every
duplicate entitlement found again under the OPRF locators and the old locators gone.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlmodel import Session

from certfed.v1 import attestation_pb2, common_pb2, desk_pb2
from cli.launcher import LocalFederation, wait_until
from federation.registry_client import RegistryClient
from federation.timestamps import to_timestamp
from federation_node.keystore import KeyPaths, load_keys
from federation_node.store import relocation_store
from federation_node.store.db import create_engine_for, session_scope
from registry.locator_oprf import load_locator_key
from signing import sealing
from signing.identity import IdentityKind
from signing.keys import write_private_file
from signing.locator import locator_with_key
from tests.helpers.commands import certfed
from tests.helpers.identities import resident_id
from tests.helpers.nodes import LANZHOU, QINGDAO

SOURCE = "hospital-admissions"
OFFICES = ("lanzhou", "qingdao")


class Federation:
    def __init__(self, local: LocalFederation) -> None:
        self.local = local
        self.serial = 0

    def number(self) -> str:
        self.serial += 1
        return resident_id("620102", datetime(1949, 3, 1).date(), self.serial)

    def register(self, node_id: str, number: str) -> str:
        request = desk_pb2.RegisterBeneficiaryRequest(
            identity=attestation_pb2.IdentityBundle(
                identity_type=common_pb2.IDENTITY_TYPE_RESIDENT_ID,
                identity_number=number,
                full_name="Test Person",
            ),
            residence_region="620102",
            monthly_amount_fen=250_000,
            valid_until=to_timestamp(datetime.now(UTC) + timedelta(days=200)),
        )
        with self.local.desk(node_id) as desk:
            beneficiary_id: str = desk.stub.RegisterBeneficiary(request).beneficiary.beneficiary_id
        return beneficiary_id

    def registry(self, node_id: str) -> RegistryClient:
        """A client of the registry with the node's own certificate."""
        config = self.local.nodes[node_id].config
        keys = load_keys(config, KeyPaths(config.data_dir))
        return RegistryClient(
            config.registry_endpoint, keys.tls.channel_credentials(), config.limits
        )

    def oprf_locator(self, number: str) -> bytes:
        key = load_locator_key(self.local.registry_paths)
        return locator_with_key(key, IdentityKind.RESIDENT_ID, number)

    def duplicates(self, node_id: str = "lanzhou") -> set[bytes]:
        with self.registry(node_id) as registry:
            return {bytes(duplicate.locator) for duplicate in registry.list_duplicates()}

    def paying(self, locator: bytes) -> list[str]:
        with self.registry("lanzhou") as registry:
            return registry.locate(locator)


@pytest.fixture(scope="module")
def federation(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Federation]:
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("CERTFED_NODE_CYCLE_HOUR_UTC", "-1")
        with LocalFederation(tmp_path_factory.mktemp("relocation")) as local:
            local.start_registry()
            local.add_node(LANZHOU)
            local.add_node(QINGDAO)
            yield Federation(local)


def _legacy_locator(key: bytes, number: str) -> bytes:
    """The locator as every member computed it before: HMAC-SHA256 under the shared key."""
    return hmac.new(key, b"resident_id\x00" + number.encode("ascii"), hashlib.sha256).digest()


def _make_legacy(federation: Federation, node_id: str, legacy_key: bytes) -> list[bytes]:
    """Rewrite a stopped node's locators to the old scheme, as an old deployment holds them,
    and its entries in the registry's index with them; the legacy locators."""
    config = federation.local.nodes[node_id].config
    keys = load_keys(config, KeyPaths(config.data_dir))
    write_private_file(KeyPaths(config.data_dir).retired_locator_key, legacy_key)
    engine = create_engine_for(config.effective_database_url)
    legacy: list[bytes] = []
    current: list[bytes] = []
    try:
        with session_scope(engine) as session:
            for person in relocation_store.people(session, "", 1000):
                identity = attestation_pb2.IdentityBundle.FromString(
                    sealing.open_sealed(
                        person.sealed_identity,
                        keys.hpke,
                        sealing.at_rest_info(person.subject_locator.hex()),
                    )
                )
                old = _legacy_locator(legacy_key, identity.identity_number)
                [sealed] = sealing.seal_many(
                    [
                        (
                            identity.SerializeToString(deterministic=True),
                            sealing.at_rest_info(old.hex()),
                        )
                    ],
                    keys.hpke.public_raw,
                )
                relocation_store.move(session, person, old, sealed, datetime.now(UTC))
                legacy.append(old)
                current.append(person.subject_locator)
    finally:
        engine.dispose()
    with federation.registry(node_id) as registry:
        registry.publish_locators(legacy, withdrawn=current)
    return legacy


def test_relocation_keeps_every_duplicate_entitlement_under_the_new_locators(
    federation: Federation,
) -> None:
    local = federation.local
    shared = [federation.number() for _ in range(3)]
    only_lanzhou = federation.number()
    for number in shared:
        for node_id in OFFICES:
            federation.register(node_id, number)
    federation.register("lanzhou", only_lanzhou)
    for node_id in OFFICES:
        local.await_outbox_drained(node_id)
        local.stop_node(node_id)

    legacy_key = os.urandom(32)
    for node_id in OFFICES:
        _make_legacy(federation, node_id, legacy_key)
    legacy_shared = {_legacy_locator(legacy_key, number) for number in shared}
    assert federation.duplicates() == legacy_shared

    for node_id in OFFICES:
        config = local.nodes[node_id].config
        config_path = str(local.nodes[node_id].config_path)
        moved = certfed("node", "relocate", "--config", config_path)
        assert moved.returncode == 0, moved.stdout + moved.stderr
        count = len(shared) + (node_id == "lanzhou")
        assert f"{node_id}: {count} locators re-derived" in moved.stdout
        assert not KeyPaths(config.data_dir).retired_locator_key.exists()
        for number in (*shared, only_lanzhou):
            assert number not in moved.stdout
        again = certfed("node", "relocate", "--config", config_path)
        assert f"0 locators re-derived, {count} already moved" in again.stdout
    for node_id in OFFICES:
        local.start_node(node_id)
        local.await_outbox_drained(node_id)

    new_shared = {federation.oprf_locator(number) for number in shared}
    assert federation.duplicates() == new_shared
    assert federation.duplicates("qingdao") == new_shared
    assert federation.paying(federation.oprf_locator(only_lanzhou)) == ["lanzhou"]
    for old in legacy_shared:
        assert federation.paying(old) == []
    # The office still finds its people by identity (their sealed identities open), and the
    # duplicate flag holds; it comes with the node's registry poll, every second here.
    find = desk_pb2.FindBeneficiaryRequest(
        identity_type=common_pb2.IDENTITY_TYPE_RESIDENT_ID, identity_number=shared[0]
    )
    with local.desk("lanzhou") as desk:

        def flagged() -> bool:
            return bool(desk.stub.FindBeneficiary(find).entitlement.beneficiary.possible_duplicate)

        wait_until(flagged, 30, "the person flagged as paid by both offices")


def test_an_erased_persons_locator_is_withdrawn_from_the_registrys_index(
    federation: Federation,
) -> None:
    local = federation.local
    number = federation.number()
    beneficiary_id = federation.register("lanzhou", number)
    locator = federation.oprf_locator(number)
    wait_until(lambda: federation.paying(locator) == ["lanzhou"], 30, "the locator published")
    died = desk_pb2.DataSignal(
        source=SOURCE,
        source_record_id="erasure-death",
        kind=desk_pb2.SIGNAL_KIND_DEATH_REGISTRATION,
        identity_type=common_pb2.IDENTITY_TYPE_RESIDENT_ID,
        identity_number=number,
        observed_at=to_timestamp(datetime.now(UTC) - timedelta(hours=1)),
    )
    with local.desk("lanzhou", "feed") as desk:
        desk.stub.RecordSignals(desk_pb2.RecordSignalsRequest(signals=[died]))
    with local.desk("lanzhou", "reviewer") as desk:
        desk.stub.ReviewTermination(
            desk_pb2.ReviewTerminationRequest(beneficiary_id=beneficiary_id, confirm=True)
        )
    config = local.nodes["lanzhou"].config
    erased = certfed(
        "node", "erase", "--config", str(local.nodes["lanzhou"].config_path), beneficiary_id
    )
    assert erased.returncode == 0, erased.stdout + erased.stderr
    wait_until(lambda: federation.paying(locator) == [], 30, "the erased locator withdrawn")
    engine = create_engine_for(config.effective_database_url)
    try:
        with Session(engine) as session:
            [person] = [
                p
                for p in relocation_store.people(session, "", 1000)
                if p.beneficiary_id == beneficiary_id
            ]
    finally:
        engine.dispose()
    assert person.sealed_identity == b""
