"""deploy/kubernetes: every manifest of the bases and overlays is valid against the Kubernetes
1.30 schemas (kubernetes-validate, strict: unknown fields refused), every reference in a
kustomization.yaml resolves, and the workloads are the hardened, probed, budgeted ones the docs
describe. The CloudNativePG Cluster, a custom resource without a schema there, is checked here.

The overlays are not rendered: kustomize is not to be had from Debian or PyPI. What rendering
would combine is checked instead: the overlays' generators, replica counts and image names
refer to what the bases hold, and their configuration files load with certfed's own loaders.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from cli.main import build_parser
from federation_node.config import NodeConfig, load_node_config
from registry.config import load_registry_config
from tests.unit.deploy.deploy_files import DEPLOY, known_settings

KUBERNETES = DEPLOY / "kubernetes"
KUBERNETES_VERSION = "1.30"
CNPG = ("postgresql.cnpg.io/v1", "Cluster")
Manifest = dict[str, Any]


def kustomizations() -> list[Path]:
    return sorted(KUBERNETES.rglob("kustomization.yaml"))


def load(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def resources(directory: Path) -> Iterator[tuple[Path, Manifest]]:
    """Every manifest a kustomization includes, following its resources into bases."""
    kustomization = load(directory / "kustomization.yaml")
    for entry in kustomization.get("resources", []):
        target = (directory / entry).resolve()
        if target.is_dir():
            yield from resources(target)
        else:
            for document in yaml.safe_load_all(target.read_text(encoding="utf-8")):
                if document:
                    yield target, document


def manifests() -> list[tuple[Path, Manifest]]:
    return [item for directory in kustomizations() for item in resources(directory.parent)]


def workloads(directory: Path, name: str | None = None) -> list[Manifest]:
    """The Deployments a kustomization includes (only the one called `name`, if given)."""
    return [
        doc
        for _, doc in resources(directory)
        if doc["kind"] == "Deployment" and name in (None, doc["metadata"]["name"])
    ]


def pod_containers(deployment: Manifest) -> list[Manifest]:
    spec = deployment["spec"]["template"]["spec"]
    return [*spec.get("initContainers", []), *spec["containers"]]


def label(path: Path, document: Manifest) -> str:
    return f"{path.relative_to(DEPLOY)}: {document['kind']}/{document['metadata']['name']}"


@pytest.mark.parametrize("path", kustomizations(), ids=lambda p: str(p.parent.relative_to(DEPLOY)))
def test_kustomization_references_resolve(path: Path) -> None:
    directory = path.parent
    kustomization = load(path)
    assert kustomization["apiVersion"] == "kustomize.config.k8s.io/v1beta1"
    assert kustomization["kind"] == "Kustomization"
    for entry in kustomization.get("resources", []):
        target = directory / entry
        assert target.is_file() or (target / "kustomization.yaml").is_file(), entry
    for generator in kustomization.get("configMapGenerator", []):
        for name in generator["files"]:
            assert (directory / name).is_file(), name
    included = list(resources(directory))
    deployments = {doc["metadata"]["name"] for _, doc in included if doc["kind"] == "Deployment"}
    for replicas in kustomization.get("replicas", []):
        assert replicas["name"] in deployments, replicas["name"]
    images = {c["image"] for d in workloads(directory) for c in pod_containers(d)}
    for image in kustomization.get("images", []):
        assert image["name"] in images, image["name"]


def test_manifests_are_found() -> None:
    kinds = {document["kind"] for _, document in manifests()}
    assert {"Deployment", "Service", "PodDisruptionBudget", "NetworkPolicy", "Cluster"} <= kinds


@pytest.mark.parametrize(
    "item", manifests(), ids=lambda item: label(*item).replace("/", "-").replace(" ", "")
)
def test_manifest_is_valid_against_the_kubernetes_schema(item: tuple[Path, Manifest]) -> None:
    _, document = item
    if (document["apiVersion"], document["kind"]) == CNPG:
        return  # a custom resource: test_postgres_is_a_cloudnativepg_cluster checks it
    kubernetes_validate.validate(document, KUBERNETES_VERSION, strict=True)


def test_the_validator_refuses_an_unknown_field() -> None:
    _, deployment = next(item for item in manifests() if item[1]["kind"] == "Deployment")
    broken = yaml.safe_load(yaml.safe_dump(deployment))
    broken["spec"]["template"]["spec"]["containers"][0]["readOnlyRootFilesytem"] = True
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES_VERSION, strict=True)


def test_postgres_is_a_cloudnativepg_cluster_of_postgresql_16() -> None:
    clusters = [doc for _, doc in manifests() if (doc["apiVersion"], doc["kind"]) == CNPG]
    assert {cluster["metadata"]["name"] for cluster in clusters} == {"office-db", "registry-db"}
    for cluster in clusters:
        spec = cluster["spec"]
        assert isinstance(spec["instances"], int)
        assert spec["instances"] >= 1
        assert spec["imageName"].endswith(":16")
        assert spec["storage"]["size"]
        assert set(spec["bootstrap"]["initdb"]) == {"database", "owner"}


@pytest.mark.parametrize("directory", ["base/node", "base/registry"])
def test_pods_are_hardened_probed_and_bounded(directory: str) -> None:
    (deployment,) = workloads(KUBERNETES / directory)
    pod = deployment["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["automountServiceAccountToken"] is False
    for container in pod_containers(deployment):
        context = container["securityContext"]
        assert context["readOnlyRootFilesystem"] is True, container["name"]
        assert context["allowPrivilegeEscalation"] is False, container["name"]
        assert context["capabilities"] == {"drop": ["ALL"]}, container["name"]
        assert context["seccompProfile"] == {"type": "RuntimeDefault"}, container["name"]
        assert set(container["resources"]) == {"requests", "limits"}, container["name"]
    (main,) = pod["containers"]
    ports = {port["name"]: port["containerPort"] for port in main["ports"]}
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        assert main[probe]["grpc"]["port"] == ports["health"], probe
    assert main["readinessProbe"]["grpc"]["service"].startswith("certfed.v1.")
    names = {variable["name"] for variable in main["env"]}
    certfed_names = {name for name in names if name.startswith("CERTFED_")}
    assert certfed_names <= known_settings(), sorted(certfed_names - known_settings())


@pytest.mark.parametrize("directory", ["base/node", "base/registry"])
def test_budget_and_network_policy_select_the_pods(directory: str) -> None:
    included = [doc for _, doc in resources(KUBERNETES / directory)]
    (deployment,) = [doc for doc in included if doc["kind"] == "Deployment"]
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    selected = [
        doc
        for doc in included
        if doc["kind"] in ("PodDisruptionBudget", "NetworkPolicy")
        and doc["spec"].get("selector", doc["spec"].get("podSelector"))["matchLabels"].items()
        <= pod_labels.items()
    ]
    assert {doc["kind"] for doc in selected} == {"PodDisruptionBudget", "NetworkPolicy"}
    (policy,) = [doc for doc in selected if doc["kind"] == "NetworkPolicy"]
    assert policy["spec"]["policyTypes"] == ["Ingress", "Egress"]
    # The database is reached from the workload's pods only (and its own instances/operator).
    (database,) = [doc for doc in included if doc["kind"] == "Cluster"]
    (guard,) = [
        doc
        for doc in included
        if doc["kind"] == "NetworkPolicy"
        and doc["spec"]["podSelector"]["matchLabels"]
        == {"cnpg.io/cluster": database["metadata"]["name"]}
    ]
    peers = [source for rule in guard["spec"]["ingress"] for source in rule["from"]]
    pod_sources = [
        source["podSelector"]["matchLabels"] for source in peers if "podSelector" in source
    ]
    assert pod_sources[0].items() <= pod_labels.items()


def test_office_overlay_runs_two_or_more_replicas_of_node_serve() -> None:
    overlay = KUBERNETES / "overlays" / "office"
    (replicas,) = load(overlay / "kustomization.yaml")["replicas"]
    assert replicas["count"] >= 2
    (deployment,) = workloads(overlay, "certfed-node")
    (main,) = deployment["spec"]["template"]["spec"]["containers"]
    assert main["args"][:2] == ["node", "serve"]


def test_the_web_desk_is_hardened_probed_and_reaches_only_the_node_desk() -> None:
    overlay = KUBERNETES / "overlays" / "office"
    (deployment,) = workloads(overlay, "certfed-web")
    pod = deployment["spec"]["template"]["spec"]
    assert deployment["spec"]["replicas"] >= 2
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["automountServiceAccountToken"] is False
    (main,) = pod["containers"]
    assert main["args"][:2] == ["web", "serve"]
    assert main["securityContext"]["readOnlyRootFilesystem"] is True
    assert main["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert set(main["resources"]) == {"requests", "limits"}
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        assert main[probe]["httpGet"] == {"path": "/healthz", "port": "http"}, probe
    # The [web] table of the office's node.toml points the desk at the Service and the Secret.
    node = load_node_config(overlay / "node.toml", environ={})
    service_port = next(
        port["port"]
        for _, doc in resources(overlay)
        if doc["kind"] == "Service" and doc["metadata"]["name"] == "certfed-node"
        for port in doc["spec"]["ports"]
        if port["name"] == "desk"
    )
    assert node.web.desk_endpoint == f"certfed-node:{service_port}"
    mounts = {mount["mountPath"] for mount in main["volumeMounts"]}
    assert str(node.web.secret_file.parent) in mounts
    (policy,) = [
        doc
        for _, doc in resources(overlay)
        if doc["kind"] == "NetworkPolicy" and doc["metadata"]["name"] == "certfed-web"
    ]
    egress_ports = {port["port"] for rule in policy["spec"]["egress"] for port in rule["ports"]}
    assert egress_ports == {53, service_port}


def test_overlay_configuration_files_load_and_feed_the_pods() -> None:
    office = KUBERNETES / "overlays" / "office"
    node = load_node_config(office / "node.toml", environ={})
    assert node.health_listen
    assert node.metrics_address
    registry = KUBERNETES / "overlays" / "registry"
    config = load_registry_config(registry / "registry.toml", environ={})
    assert config.health_listen
    assert config.metrics_address
    for overlay, name, expected in (
        (office, "certfed-node", node.health_listen),
        (registry, "certfed-registry", config.health_listen),
    ):
        (deployment,) = workloads(overlay, name)
        (generator,) = load(overlay / "kustomization.yaml")["configMapGenerator"]
        volumes = deployment["spec"]["template"]["spec"]["volumes"]
        assert generator["name"] in {v["configMap"]["name"] for v in volumes if "configMap" in v}
        (main,) = deployment["spec"]["template"]["spec"]["containers"]
        health = next(port for port in main["ports"] if port["name"] == "health")
        assert expected.endswith(f":{health['containerPort']}")


def test_the_reminders_run_daily_after_the_cycle_hardened_against_the_node_desk() -> None:
    overlay = KUBERNETES / "overlays" / "office"
    included = [doc for _, doc in resources(overlay)]
    (cron,) = [doc for doc in included if doc["kind"] == "CronJob"]
    _minute, hour, *every_day = cron["spec"]["schedule"].split()
    assert every_day == ["*", "*", "*"]
    assert int(hour) > next(
        f.default for f in dataclasses.fields(NodeConfig) if f.name == "cycle_hour_utc"
    )
    assert cron["spec"]["timeZone"] == "Etc/UTC"
    assert cron["spec"]["concurrencyPolicy"] == "Forbid"
    job = cron["spec"]["jobTemplate"]["spec"]
    pod = job["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["automountServiceAccountToken"] is False
    (main,) = pod["containers"]
    assert main["securityContext"]["readOnlyRootFilesystem"] is True
    assert main["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert set(main["resources"]) == {"requests", "limits"}
    # Exit status 2 (reminders left for the office, listed) is not run again the same day.
    (rule,) = job["podFailurePolicy"]["rules"]
    assert (rule["action"], rule["onExitCodes"]["values"]) == ("FailJob", [2])
    # The arguments are certfed's own, the token comes from a Secret, never from the args.
    arguments = build_parser().parse_args(main["args"])
    assert (arguments.command, arguments.notify) == ("notify", "run")
    desk_port = next(
        port["port"]
        for doc in included
        if doc["kind"] == "Service" and doc["metadata"]["name"] == "certfed-node"
        for port in doc["spec"]["ports"]
        if port["name"] == "desk"
    )
    assert arguments.endpoint == f"certfed-node:{desk_port}"
    (token,) = main["env"]
    assert token["name"] == "CERTFED_OPERATOR_TOKEN"
    assert "secretKeyRef" in token["valueFrom"]
    mounts = {mount["mountPath"] for mount in main["volumeMounts"]}
    assert str(Path(arguments.sms_config).parent) in mounts
    (policy,) = [
        doc
        for doc in included
        if doc["kind"] == "NetworkPolicy" and doc["metadata"]["name"] == "certfed-notify"
    ]
    pod_labels = job["template"]["metadata"]["labels"]
    assert policy["spec"]["podSelector"]["matchLabels"].items() <= pod_labels.items()
    assert policy["spec"]["ingress"] == []
    egress_ports = {port["port"] for rule in policy["spec"]["egress"] for port in rule["ports"]}
    assert egress_ports == {53, desk_port, 443}
