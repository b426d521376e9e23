"""deploy/compose/compose.yaml: valid against the Compose Specification's JSON schema
(tests/vectors/compose-spec.json, source in compose-spec.md), and consistent with certfed: every
key file a registry or node loads is mounted as a secret where it looks for it, every CERTFED_
variable is a setting certfed reads, the configuration files load with certfed's own loaders,
and Prometheus scrapes each certfed service on its metrics port."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from federation_node.config import load_node_config
from federation_node.keystore import KeyPaths
from registry.config import RegistryPaths, load_registry_config
from tests.unit.deploy.deploy_files import DEPLOY, ROOT, known_settings

COMPOSE = DEPLOY / "compose"
SCHEMA = ROOT / "tests" / "vectors" / "compose-spec.json"
NODES = ("lanzhou", "qingdao")
CERTFED_SERVICES = ("registry", *NODES)
METRICS_PORT = 9464  # the image's CERTFED_*_METRICS_ADDRESS


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load((COMPOSE / "compose.yaml").read_text("utf-8"))
    return document


def secret_targets(service: dict[str, Any]) -> set[str]:
    return {entry["target"] for entry in service["secrets"] if isinstance(entry, dict)}


def test_compose_file_is_valid_against_the_compose_specification(
    compose: dict[str, Any],
) -> None:
    schema = json.loads(SCHEMA.read_text(encoding="utf-8"))
    jsonschema.Draft202012Validator.check_schema(schema)
    errors = sorted(
        jsonschema.Draft202012Validator(schema).iter_errors(compose), key=lambda e: list(e.path)
    )
    assert not errors, "\n".join(f"{list(e.path)}: {e.message}" for e in errors)


def test_the_schema_refuses_a_misspelt_key(compose: dict[str, Any]) -> None:
    schema = json.loads(SCHEMA.read_text(encoding="utf-8"))
    broken = json.loads(json.dumps(compose))
    broken["services"]["registry"]["read_olny"] = True
    assert list(jsonschema.Draft202012Validator(schema).iter_errors(broken))


def test_postgres_16_has_one_database_per_service(compose: dict[str, Any]) -> None:
    postgres = compose["services"]["postgres"]
    assert postgres["image"].rsplit(":", 1)[1].startswith("16")
    script = (COMPOSE / "postgres-init.sh").read_text(encoding="utf-8")
    assert f"for service in {' '.join(CERTFED_SERVICES)}; do" in script
    for name in CERTFED_SERVICES:
        assert f"{name}-db-password" in postgres["secrets"]
        service = compose["services"][name]
        assert service["environment"]["PGSERVICEFILE"] == f"/run/secrets/{name}-pg-service"
        assert "database" in service["networks"]
    assert compose["networks"]["database"]["internal"] is True


def test_registry_secrets_are_the_files_the_registry_loads(compose: dict[str, Any]) -> None:
    config = load_registry_config(COMPOSE / "registry.toml", environ={})
    paths = RegistryPaths(config.data_dir)
    needed = {
        paths.root_key,
        paths.root_public_key,
        paths.ca_key,
        paths.ca_certificate,
        paths.registry_key,
        paths.registry_certificate,
        paths.locator_oprf_key,
        paths.witness_key,
    }
    assert {str(path) for path in needed} <= secret_targets(compose["services"]["registry"])


@pytest.mark.parametrize("node", NODES)
def test_node_secrets_are_the_files_the_node_loads(compose: dict[str, Any], node: str) -> None:
    config = load_node_config(COMPOSE / f"{node}.toml", environ={})
    assert config.node_id == node
    keys = KeyPaths(config.data_dir)
    needed = {
        keys.signing_key,
        keys.hpke_key,
        keys.tls_key,
        keys.tls_certificate,
        config.root_public_key,
        config.ca_certificate,
        config.witness_public_key,
    }
    assert {str(path) for path in needed} <= secret_targets(compose["services"][node])
    setup = compose["services"][f"{node}-setup"]
    assert f"./secrets/{node}:{keys.tls_key.parent}" in setup["volumes"]


def test_secret_and_config_files_are_where_the_setup_puts_them(compose: dict[str, Any]) -> None:
    for name, secret in compose["secrets"].items():
        assert secret["file"].startswith("./secrets/"), name
    for name, config in compose["configs"].items():
        assert (COMPOSE / config["file"]).is_file(), name
    ignored = (COMPOSE / ".gitignore").read_text(encoding="utf-8").split()
    assert "/secrets/" in ignored


def test_certfed_services_are_locked_down(compose: dict[str, Any]) -> None:
    certfed = [
        name for name, service in compose["services"].items() if "certfed" in service["image"]
    ]
    assert {*CERTFED_SERVICES, *(f"{node}-web" for node in NODES)} <= set(certfed)
    for name in certfed:
        service = compose["services"][name]
        assert service["read_only"] is True, name
        assert service["cap_drop"] == ["ALL"], name
        assert "no-new-privileges:true" in service["security_opt"], name
        assert service["tmpfs"] == ["/tmp"], name
        variables = {key for key in service.get("environment", {}) if key.startswith("CERTFED_")}
        assert variables <= known_settings(), sorted(variables - known_settings())


@pytest.mark.parametrize("node", NODES)
def test_web_desk_reaches_its_node_and_serves_on_loopback(
    compose: dict[str, Any], node: str
) -> None:
    config = load_node_config(COMPOSE / f"{node}.toml", environ={})
    web = compose["services"][f"{node}-web"]
    assert web["command"] == ["web", "serve", "--config", "/etc/certfed/node.toml"]
    assert {"source": f"{node}-config", "target": "/etc/certfed/node.toml"} in web["configs"]
    # The node's desk, by service name on a network both are on, at the port it listens on.
    host, _, port = config.web.desk_endpoint.rpartition(":")
    assert host == node
    assert port == config.desk_listen.rpartition(":")[2]
    assert set(web["networks"]) & set(compose["services"][node]["networks"])
    assert web["depends_on"][node]["condition"] == "service_healthy"
    # Its secret and the CA it checks the node's certificate with are where the config says.
    assert config.web.tls == "off"
    assert str(config.web.secret_file) == f"/run/secrets/{node}-web-secret"
    assert f"{node}-web-secret" in web["secrets"]
    assert compose["secrets"][f"{node}-web-secret"]["file"] == f"./secrets/{node}-web.secret"
    assert str(config.ca_certificate) in secret_targets(web)
    # Plain HTTP goes no further than the host's loopback (a proxy adds HTTPS).
    container_port = config.web.listen.rpartition(":")[2]
    [published] = web["ports"]
    assert published.startswith("127.0.0.1:")
    assert published.endswith(f":{container_port}")
    assert f"127.0.0.1:{container_port}/healthz" in " ".join(web["healthcheck"]["test"])
    assert "database" not in web["networks"]


@pytest.mark.parametrize("node", NODES)
def test_reminders_run_once_against_their_node(compose: dict[str, Any], node: str) -> None:
    config = load_node_config(COMPOSE / f"{node}.toml", environ={})
    notify = compose["services"][f"{node}-notify"]
    assert notify["profiles"] == ["reminders"]
    assert notify["restart"] == "no"
    command = notify["command"]
    assert command[:2] == ["notify", "run"]
    options = dict(zip(command[2::2], command[3::2], strict=True))
    assert options["--config"] == "/etc/certfed/node.toml"
    assert options["--endpoint"] == f"{node}:{config.desk_listen.rpartition(':')[2]}"
    mounted = {volume.split(":")[1]: volume.split(":")[0] for volume in notify["volumes"]}
    assert mounted["/run/certfed/notify"] == f"./secrets/{node}-notify"
    assert options["--sms-config"].startswith("/run/certfed/notify/")
    assert notify["env_file"] == [f"./secrets/{node}-notify/notify.env"]
    assert str(config.ca_certificate) in secret_targets(notify)
    assert "database" not in notify["networks"]


def test_prometheus_scrapes_every_certfed_service(compose: dict[str, Any]) -> None:
    prometheus = compose["services"]["prometheus"]
    mount = next(volume for volume in prometheus["volumes"] if volume.startswith("../monitoring:"))
    config_dir = mount.split(":")[1]
    assert f"--config.file={config_dir}/prometheus.yml" in prometheus["command"]
    scrape = yaml.safe_load((DEPLOY / "monitoring" / "prometheus.yml").read_text("utf-8"))
    targets = {
        target
        for job in scrape["scrape_configs"]
        for group in job["static_configs"]
        for target in group["targets"]
    }
    assert targets == {f"{name}:{METRICS_PORT}" for name in CERTFED_SERVICES}


def test_configuration_files_listen_where_the_image_expects(compose: dict[str, Any]) -> None:
    registry = load_registry_config(COMPOSE / "registry.toml", environ={})
    assert registry.metrics_address == f"0.0.0.0:{METRICS_PORT}"
    for node in NODES:
        config = load_node_config(COMPOSE / f"{node}.toml", environ={})
        assert config.metrics_address == f"0.0.0.0:{METRICS_PORT}"
        assert config.registry_endpoint == "registry:7400"
        assert Path(config.data_dir) == Path("/var/lib/certfed/node")
