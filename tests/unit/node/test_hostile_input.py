"""Values a hostile or buggy peer can put in a well-formed message are refused by field name."""

from __future__ import annotations

from datetime import date

import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from certfed.v1 import attestation_pb2, common_pb2
from federation.errors import InvalidInputError
from federation.limits import Limits
from federation.timestamps import MAX_SECONDS, MIN_SECONDS, to_datetime
from federation_node.rules.minimisation import MinimisationConfig, minimised
from federation_node.rules.validation import (
    checked_identity,
    page_size,
    require_id,
    require_methods,
    require_sequence,
    require_text,
)
from signing.errors import InvalidIdentityNumberError
from tests.helpers.identities import resident_id

LIMITS = Limits()


@pytest.mark.parametrize(
    ("seconds", "nanos"),
    [(MAX_SECONDS + 1, 0), (MIN_SECONDS - 1, 0), (2**63 - 1, 0), (0, -1), (0, 10**9)],
)
def test_a_timestamp_no_datetime_can_hold_is_refused_by_field(seconds: int, nanos: int) -> None:
    with pytest.raises(InvalidInputError, match=r"^deadline: "):
        to_datetime(Timestamp(seconds=seconds, nanos=nanos), "deadline")


def test_the_last_representable_moment_is_accepted() -> None:
    assert to_datetime(Timestamp(seconds=MAX_SECONDS, nanos=999_999_999)).year == 9999


@pytest.mark.parametrize(
    "value",
    [
        "0190F0F0-0000-7000-8000-000000000000",
        "{0190f0f0-0000-7000-8000-000000000000}",
        "urn:uuid:0190f0f0-0000-7000-8000-000000000000",
        "0190f0f000007000800000000000000",
        "0190f0f0000070008000000000000000",
    ],
)
def test_an_id_is_accepted_only_in_canonical_form(value: str) -> None:
    with pytest.raises(InvalidInputError, match=r"^request_id: "):
        require_id(value, "request_id")


@pytest.mark.parametrize("value", ["a\x00b", "\x1b[2J", "bell\x07", "del\x7f"])
def test_control_characters_are_refused_in_text(value: str) -> None:
    with pytest.raises(InvalidInputError, match=r"^note: must not contain control characters"):
        require_text(value, "note", LIMITS)


def test_line_breaks_and_tabs_are_kept_in_a_note() -> None:
    assert require_text("line 1\r\nline 2\tend", "note", LIMITS) == "line 1\r\nline 2\tend"


def test_a_method_listed_twice_or_unknown_is_refused_by_index() -> None:
    on_site = common_pb2.CERTIFICATION_METHOD_ON_SITE
    with pytest.raises(InvalidInputError, match=r"^acceptable_methods\[1\]: lists a method twice"):
        require_methods([on_site, on_site], "acceptable_methods")
    with pytest.raises(InvalidInputError, match=r"^acceptable_methods\[0\]: "):
        require_methods([99], "acceptable_methods")


def test_a_sequence_above_the_stored_column_is_refused() -> None:
    assert require_sequence(2**31 - 1, "sequence") == 2**31 - 1
    with pytest.raises(InvalidInputError, match=r"^sequence: "):
        require_sequence(2**31, "sequence")


def test_a_page_size_above_the_limit_is_refused() -> None:
    with pytest.raises(InvalidInputError, match=r"^page_size: "):
        page_size(LIMITS.max_page_size + 1, LIMITS)


def _identity(**fields: str) -> attestation_pb2.IdentityBundle:
    return attestation_pb2.IdentityBundle(
        identity_type=common_pb2.IDENTITY_TYPE_RESIDENT_ID,
        identity_number=resident_id("620102", date(1948, 1, 1), 1),
        **fields,
    )


def test_a_peer_identity_may_lack_the_name_but_not_a_valid_number() -> None:
    checked_identity(_identity(), "sealed_identity", LIMITS)
    wrong = _identity()
    wrong.identity_number = wrong.identity_number[:-1] + "0"
    with pytest.raises(InvalidIdentityNumberError):
        checked_identity(wrong, "sealed_identity", LIMITS)
    with pytest.raises(InvalidInputError, match=r"^sealed_identity\.address: "):
        checked_identity(_identity(address="x\x00"), "sealed_identity", LIMITS)


def test_minimisation_keeps_only_the_configured_fields_for_a_partner() -> None:
    full = _identity(full_name="Chan Tai Man", phone="1", address="2")
    sent = minimised(full, [common_pb2.ROLE_PARTNER_LIAISON], MinimisationConfig())
    assert (sent.full_name, sent.phone, sent.address) == ("Chan Tai Man", "", "")
    assert sent.identity_number == full.identity_number
    kept = minimised(full, [common_pb2.ROLE_RESIDENCE_AGENCY], MinimisationConfig())
    assert kept == full


def test_a_node_with_several_roles_gets_the_strictest_list() -> None:
    full = _identity(full_name="Chan Tai Man", phone="1", address="2")
    sent = minimised(
        full,
        [common_pb2.ROLE_RESIDENCE_AGENCY, common_pb2.ROLE_PARTNER_LIAISON],
        MinimisationConfig(),
    )
    assert sent.phone == ""


@pytest.mark.parametrize(
    ("fields", "problem"),
    [
        (("identity_type", "identity_number", "shoe_size"), "'shoe_size' is not an identity field"),
        (("identity_type", "full_name"), "identity_number is always sent"),
    ],
)
def test_a_minimisation_setting_that_cannot_work_is_refused(
    fields: tuple[str, ...], problem: str
) -> None:
    with pytest.raises(InvalidInputError, match=f"^minimisation.partner_liaison: {problem}"):
        MinimisationConfig(partner_liaison=fields).validate()
