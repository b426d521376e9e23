"""Loading registry.toml: defaults, relative paths, environment overrides, refusals by name."""

from __future__ import annotations

from pathlib import Path

import pytest

from federation.errors import InvalidInputError
from federation.limits import Limits
from registry.config import RegistryConfig, default_config_text, load_registry_config


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "conf" / "registry.toml"
    path.parent.mkdir(exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


MINIMAL = 'federation_id = "test-fed"\ndata_dir = "data"\n'


def test_minimal_file_gets_safe_defaults_and_data_dir_relative_to_the_file(
    tmp_path: Path,
) -> None:
    config = load_registry_config(_write(tmp_path, MINIMAL), environ={})
    assert config.data_dir == (tmp_path / "conf" / "data").resolve()
    assert config.effective_database_url == f"sqlite:///{config.data_dir / 'registry.db'}"
    assert config.listen == "127.0.0.1:7400"
    assert config.enrol_listen == "127.0.0.1:7401"
    assert config.limits == Limits()
    assert config.paths.trust_ca_certificate == config.data_dir / "trust" / "ca.pem"
    assert config.paths.admin_certificate("alice") == config.data_dir / "admin" / "alice.pem"


def test_environment_overrides_the_file(tmp_path: Path) -> None:
    path = _write(tmp_path, MINIMAL + 'listen = "127.0.0.1:7000"\n[limits]\nmax_repeated = 5\n')
    config = load_registry_config(
        path,
        environ={
            "CERTFED_REGISTRY_DATABASE_URL": "postgresql+psycopg://db/registry",
            "CERTFED_REGISTRY_LISTEN": "0.0.0.0:7400",
            "CERTFED_REGISTRY_LIMITS_CALL_TIMEOUT_S": "2.5",
            "CERTFED_NODE_LISTEN": "ignored:1",
        },
    )
    assert config.database_url == "postgresql+psycopg://db/registry"
    assert config.listen == "0.0.0.0:7400"
    assert config.limits.call_timeout_s == 2.5
    assert config.limits.max_repeated == 5


def test_default_config_text_loads_to_the_defaults(tmp_path: Path) -> None:
    config = load_registry_config(_write(tmp_path, default_config_text("test-fed")), environ={})
    assert config == RegistryConfig(federation_id="test-fed", data_dir=(tmp_path / "conf"))


@pytest.mark.parametrize(
    ("text", "environ", "field"),
    [
        (MINIMAL + "lisen = '127.0.0.1:1'\n", {}, "lisen"),
        (MINIMAL + "[limits]\nmax_repeat = 3\n", {}, "limits.max_repeat"),
        (MINIMAL + "directory_lifetime_s = 'long'\n", {}, "directory_lifetime_s"),
        (MINIMAL + "node_certificate_days = 1.5\n", {}, "node_certificate_days"),
        (MINIMAL + "listen = 7400\n", {}, "listen"),
        (MINIMAL + "listen = '127.0.0.1'\n", {}, "listen"),
        (MINIMAL + "log_level = 'chatty'\n", {}, "log_level"),
        (MINIMAL + "republish_interval_s = 999999999.0\n", {}, "republish_interval_s"),
        (MINIMAL + "[limits]\ncall_timeout_s = -1.0\n", {}, "limits.call_timeout_s"),
        (MINIMAL + "[limits]\nmax_repeated = true\n", {}, "limits.max_repeated"),
        (MINIMAL, {"CERTFED_REGISTRY_LISTN": "x"}, "CERTFED_REGISTRY_LISTN"),
        (MINIMAL, {"CERTFED_REGISTRY_LIMITS_MAX_REPEATED": "many"}, "LIMITS_MAX_REPEATED"),
        (MINIMAL, {"CERTFED_REGISTRY_DIRECTORY_LIFETIME_S": "nan"}, "DIRECTORY_LIFETIME_S"),
        ('data_dir = "data"\n', {}, "federation_id"),
        ('federation_id = "Test Fed"\ndata_dir = "d"\n', {}, "federation_id"),
        ("federation_id = [\n", {}, "registry.toml"),
    ],
)
def test_bad_setting_is_refused_naming_it(
    tmp_path: Path, text: str, environ: dict[str, str], field: str
) -> None:
    with pytest.raises(InvalidInputError) as refused:
        load_registry_config(_write(tmp_path, text), environ=environ)
    assert field in refused.value.field


def test_missing_file_is_refused_naming_it(tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match="cannot read configuration") as refused:
        load_registry_config(tmp_path / "absent.toml", environ={})
    assert refused.value.field.endswith("absent.toml")
