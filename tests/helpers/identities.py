"""Valid identities for tests: GB 11643 resident ID numbers and the identity bundles the desk
takes, so a test names the person it needs (region, birth date, serial) and never a checksum."""

from __future__ import annotations

from datetime import date

from certfed.v1 import attestation_pb2, common_pb2
from signing.identity import resident_id_check_character


def resident_id(region: str, born: date, serial: int) -> str:
    """The resident ID number of the `serial`th person (0-999) born in `region` on `born`."""
    first_17 = f"{region}{born:%Y%m%d}{serial:03d}"
    return first_17 + resident_id_check_character(first_17)


def resident(
    number: str, name: str = "Test Person", **fields: str
) -> attestation_pb2.IdentityBundle:
    """A resident ID holder's identity bundle; `fields` adds phone, address and the like."""
    return attestation_pb2.IdentityBundle(
        identity_type=common_pb2.IDENTITY_TYPE_RESIDENT_ID,
        identity_number=number,
        full_name=name,
        **fields,
    )
