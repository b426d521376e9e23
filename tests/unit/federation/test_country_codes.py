"""Country codes abroad as region codes: checked against the ISO 3166-1 list, covering only
themselves, and served only by overseas posts (and overseas posts serving nothing else)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from certfed.v1 import common_pb2, directory_pb2
from federation.directory import sign_directory, verify_directory
from federation.errors import InvalidInputError, UnservedRegionError
from federation.regions import (
    COUNTRY_CODES,
    ISO_3166_ALPHA_2,
    coverage,
    is_country_code,
    province_of,
    validate_country_code,
    validate_region_code,
)
from federation.roles import (
    OVERSEAS_POST,
    PAYING_OFFICE,
    RESIDENCE_AGENCY,
    ROLE_NAMES,
    check_served_regions,
)
from federation.timestamps import to_timestamp
from federation_node.config import NodeConfig, load_node_config
from signing.keys import SigningKey

NOW = datetime(2030, 1, 1, tzinfo=UTC)


def test_the_vendored_list_holds_the_249_assigned_codes_and_only_codes() -> None:
    assert len(ISO_3166_ALPHA_2) == 249
    assert all(len(code) == 2 and code.isascii() and code.isupper() for code in ISO_3166_ALPHA_2)
    assert {"CA", "ZW", "US", "GB", "AU", "SS", "BQ", "CW", "SX", "CN", "HK", "MO", "TW"} <= (
        ISO_3166_ALPHA_2
    )
    # Reserved or user-assigned, never officially assigned.
    assert not {"XK", "EU", "UK", "ZZ", "AN", "YU", "CS"} & ISO_3166_ALPHA_2
    assert ISO_3166_ALPHA_2 - {"CN", "TW", "HK", "MO"} == COUNTRY_CODES


@pytest.mark.parametrize("code", ["CA", "ZW", "US", "AU", "NZ", "SS"])
def test_a_country_abroad_is_a_region_code(code: str) -> None:
    assert validate_region_code(code, "residence_region") == code
    assert validate_country_code(code) == code
    assert is_country_code(code)
    assert province_of(code) == code


@pytest.mark.parametrize(
    ("code", "says"),
    [
        ("XQ", "not an ISO 3166-1 alpha-2 country code"),
        ("UK", "not an ISO 3166-1 alpha-2 country code"),
        ("ca", "in capitals: CA"),
        ("CN", "CN is the mainland"),
        ("TW", "710000"),
    ],
)
def test_an_unknown_or_domestic_two_letter_code_is_refused_with_a_reason(
    code: str, says: str
) -> None:
    with pytest.raises(InvalidInputError) as refused:
        validate_region_code(code, "residence_region")
    assert refused.value.field == "residence_region"
    assert says in str(refused.value)


@pytest.mark.parametrize("code", ["HK", "MO", "CN", "440600", "XQ", "C"])
def test_a_country_code_is_only_a_country_abroad(code: str) -> None:
    with pytest.raises(InvalidInputError) as refused:
        validate_country_code(code, "region_codes[0]")
    assert refused.value.field == "region_codes[0]"
    assert not is_country_code(code)


def test_a_country_covers_itself_only() -> None:
    assert coverage("CA", "CA") == 3
    assert coverage("CA", "US") == 0
    assert coverage("CA", "440600") == 0
    assert coverage("440000", "CA") == 0
    assert coverage("MO", "CA") == 0


def test_an_overseas_post_serves_countries_abroad_and_nothing_else() -> None:
    assert ROLE_NAMES[common_pb2.ROLE_OVERSEAS_POST] == OVERSEAS_POST
    check_served_regions((OVERSEAS_POST,), ("CA", "ZW"), "region_codes")
    check_served_regions((RESIDENCE_AGENCY, PAYING_OFFICE), ("370200", "MO"), "region_codes")
    for code in ("MO", "HK", "CN", "440600"):
        with pytest.raises(InvalidInputError) as refused:
            check_served_regions((OVERSEAS_POST,), ("CA", code), "region_codes")
        assert refused.value.field == "region_codes[1]"
    with pytest.raises(InvalidInputError, match="overseas_post") as refused:
        check_served_regions((RESIDENCE_AGENCY,), ("370200", "CA"), "region_codes")
    assert refused.value.field == "region_codes[1]"


def test_a_country_routes_to_the_post_serving_it_and_routing_may_name_it() -> None:
    directory = directory_pb2.Directory(
        federation_id="test",
        version=1,
        issued_at=to_timestamp(NOW),
        expires_at=to_timestamp(NOW + timedelta(days=1)),
        nodes=[
            directory_pb2.DirectoryNode(
                node_id=node_id,
                region_codes=codes,
                roles=[common_pb2.ROLE_OVERSEAS_POST],
                status=common_pb2.NODE_STATUS_ACTIVE,
            )
            for node_id, codes in (
                ("ottawa", ["CA"]),
                ("toronto", ["CA"]),
                ("harare", ["ZW"]),
            )
        ],
    )
    root = SigningKey.generate()
    trusted = verify_directory(sign_directory(directory, root), root.public_key, now=NOW)
    assert trusted.route("ZW").node_id == "harare"
    assert trusted.route("CA", {"CA": "toronto"}).node_id == "toronto"
    with pytest.raises(UnservedRegionError, match="US"):
        trusted.route("US")
    with pytest.raises(UnservedRegionError, match="routing"):
        trusted.route("ZW", {"ZW": "ottawa"})


POST_CONFIG = """
node_id = "{node_id}"
region_codes = {codes}
roles = {roles}
registry_endpoint = "127.0.0.1:7400"
registry_enrol_endpoint = "127.0.0.1:7401"
"""


def node_config(tmp_path: Path, codes: str, roles: str, extra: str = "") -> NodeConfig:
    path = tmp_path / "node.toml"
    text = POST_CONFIG.format(node_id="a-node", codes=codes, roles=roles) + extra
    path.write_text(text, encoding="utf-8")
    return load_node_config(path, environ={})


def test_a_node_configured_as_a_post_serves_countries_and_routing_names_posts(
    tmp_path: Path,
) -> None:
    post = node_config(tmp_path, '["CA", "ZW"]', '["overseas_post"]')
    assert post.region_codes == ("CA", "ZW")
    assert post.minimisation.fields_for([common_pb2.ROLE_OVERSEAS_POST]) == {
        "identity_type",
        "identity_number",
        "full_name",
    }
    paying = node_config(
        tmp_path, '["620102"]', '["paying_office"]', '\n[routing]\nCA = "toronto-consulate"\n'
    )
    assert paying.routing == {"CA": "toronto-consulate"}
    with pytest.raises(InvalidInputError) as refused:
        node_config(tmp_path, '["620102"]', '["paying_office"]', '\n[routing]\nXQ = "somewhere"\n')
    assert refused.value.field == "routing.XQ"
    with pytest.raises(InvalidInputError) as refused:
        node_config(tmp_path, '["CA", "MO"]', '["overseas_post"]')
    assert refused.value.field == "region_codes[1]"
