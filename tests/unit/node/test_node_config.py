"""A node's configuration file: safe defaults, environment overrides, errors that name the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from federation.errors import InvalidInputError
from federation_node.config import load_node_config
from federation_node.rules.policy import load_policy

MINIMAL = """
node_id = "qingdao"
region_codes = ["370200"]
roles = ["residence_agency", "paying_office"]
registry_endpoint = "127.0.0.1:7400"
registry_enrol_endpoint = "127.0.0.1:7401"
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "node.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_a_minimal_file_gets_safe_defaults_and_paths_under_the_file(tmp_path: Path) -> None:
    config = load_node_config(write(tmp_path, MINIMAL), environ={})
    assert config.data_dir == tmp_path
    assert config.effective_database_url == f"sqlite:///{tmp_path / 'node.db'}"
    assert config.root_public_key == tmp_path / "trust" / "root.pub"
    # The validity period is the policy's; without a policy file the node has the default.
    assert load_policy(config.policy_file).validity_months == 12
    assert config.audit_sequence_interval_s == 0.2
    assert config.audit_full_check_interval_s == 6 * 3600
    assert config.locator_reserve == 20_000
    assert config.listen.startswith("127.0.0.1:")


def test_the_environment_overrides_the_file(tmp_path: Path) -> None:
    config = load_node_config(
        write(tmp_path, MINIMAL),
        environ={"CERTFED_NODE_DATABASE_URL": "postgresql+psycopg://db/x"},
    )
    assert config.effective_database_url == "postgresql+psycopg://db/x"


@pytest.mark.parametrize(
    ("extra", "field"),
    [
        ('colour = "blue"\n', "colour"),
        ("validity_months = 40\n", "validity_months"),
        ("audit_sequence_interval_s = 0\n", "audit_sequence_interval_s"),
        ("audit_full_check_interval_s = 10\n", "audit_full_check_interval_s"),
        ("locator_reserve = -1\n", "locator_reserve"),
        ("audit_full_check_interval_s = 604800\n", "audit_full_check_interval_s"),
        ("audit_sequence_intervall_s = 1\n", "audit_sequence_intervall_s"),
        ("[limits]\nmax_speed = 3\n", "limits.max_speed"),
    ],
)
def test_a_bad_setting_is_refused_by_name(tmp_path: Path, extra: str, field: str) -> None:
    with pytest.raises(InvalidInputError) as refused:
        load_node_config(write(tmp_path, MINIMAL + extra), environ={})
    assert refused.value.field == field


@pytest.mark.parametrize(
    ("old", "new", "field"),
    [
        ('region_codes = ["370200"]', 'region_codes = ["3702"]', "region_codes"),
        ('roles = ["residence_agency", "paying_office"]', 'roles = ["bank"]', "roles"),
        ('node_id = "qingdao"', "", "node_id"),
    ],
)
def test_a_missing_or_invalid_identity_setting_is_refused_by_name(
    tmp_path: Path, old: str, new: str, field: str
) -> None:
    with pytest.raises(InvalidInputError) as refused:
        load_node_config(write(tmp_path, MINIMAL.replace(old, new)), environ={})
    assert refused.value.field == field


@pytest.mark.parametrize(
    ("extra", "environ", "remedy"),
    [
        ("validity_months = 12\n", {}, "remove it from node.toml"),
        ("", {"CERTFED_NODE_VALIDITY_MONTHS": "12"}, "unset CERTFED_NODE_VALIDITY_MONTHS"),
    ],
)
def test_validity_months_is_refused_and_points_to_the_policy_file(
    tmp_path: Path, extra: str, environ: dict[str, str], remedy: str
) -> None:
    with pytest.raises(InvalidInputError) as refused:
        load_node_config(write(tmp_path, MINIMAL + extra), environ=environ)
    assert refused.value.field == "validity_months"
    assert remedy in refused.value.problem
    assert "`period_months = N` under `[validity]` in policy.toml" in refused.value.problem


def test_a_missing_file_or_bad_toml_says_so(tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match="no configuration file"):
        load_node_config(tmp_path / "absent.toml", environ={})
    with pytest.raises(InvalidInputError, match="not valid TOML"):
        load_node_config(write(tmp_path, "node_id = ["), environ={})
