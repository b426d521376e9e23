"""deploy/systemd: `systemd-analyze verify` accepts every unit without a word, each one scores
at most 2.0 on `systemd-analyze security` (lower is tighter), and each carries the hardening
and the paths the docs describe.

Both tools run offline against a scratch root holding the system's own units, ours, and a stand-in
for /opt/certfed/bin/certfed (verify checks that ExecStart names an executable file).
"""

from __future__ import annotations

import dataclasses
import shutil
import subprocess
from pathlib import Path

import pytest

from federation_node.config import NodeConfig
from tests.unit.deploy.deploy_files import DEPLOY, FindTool

UNITS = DEPLOY / "systemd"
# The template units as one instance each, named for an office.
INSTANCES = {
    "certfed-registry.service": "certfed-registry.service",
    "certfed-node@.service": "certfed-node@lanzhou.service",
    "certfed-web@.service": "certfed-web@lanzhou.service",
    "certfed-notify@.service": "certfed-notify@lanzhou.service",
}
TIMERS = {"certfed-notify@.timer": "certfed-notify@lanzhou.timer"}
EXECUTABLE = Path("opt/certfed/bin/certfed")
SYSTEM_UNITS = (Path("/usr/lib/systemd/system"), Path("/lib/systemd/system"))
HARDENING = {
    "NoNewPrivileges": "yes",
    "ProtectSystem": "strict",
    "PrivateTmp": "yes",
    "ProtectHome": "yes",
    "PrivateDevices": "yes",
    "CapabilityBoundingSet": "",
    "RestrictAddressFamilies": "AF_INET AF_INET6 AF_UNIX",
    "RestrictNamespaces": "yes",
    "RestrictSUIDSGID": "yes",
    "LockPersonality": "yes",
    "SystemCallArchitectures": "native",
    "User": "certfed",
}


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    scratch = tmp_path_factory.mktemp("systemd-root")
    system = next((path for path in SYSTEM_UNITS if path.is_dir()), None)
    if system is None:
        pytest.fail("no systemd unit directory: install the Debian package systemd")
    shutil.copytree(system, scratch / "usr/lib/systemd/system", symlinks=True)
    ours = scratch / "etc/systemd/system"
    ours.mkdir(parents=True)
    for unit in [*INSTANCES, *TIMERS]:
        shutil.copy(UNITS / unit, ours / unit)
    executable = scratch / EXECUTABLE
    executable.parent.mkdir(parents=True)
    executable.write_text("#!/bin/sh\n", encoding="utf-8")
    executable.chmod(0o755)
    return scratch


def settings(unit: str) -> dict[str, list[str]]:
    """The unit's Key=value lines, every value of a repeated key kept in order."""
    found: dict[str, list[str]] = {}
    for line in (UNITS / unit).read_text(encoding="utf-8").splitlines():
        if line and not line.startswith(("#", "[")):
            key, _, value = line.partition("=")
            found.setdefault(key, []).append(value)
    return found


def test_the_units_are_all_there() -> None:
    assert sorted(path.name for path in UNITS.glob("*.service")) == sorted(INSTANCES)
    assert sorted(path.name for path in UNITS.glob("*.timer")) == sorted(TIMERS)


@pytest.mark.parametrize("unit", [*INSTANCES.values(), *TIMERS.values()])
def test_systemd_analyze_verify_accepts_the_unit_silently(
    unit: str, root: Path, tool: FindTool
) -> None:
    finished = subprocess.run(
        [tool("systemd-analyze"), "verify", "--man=no", f"--root={root}", unit],
        capture_output=True,
        text=True,
        check=False,
    )
    # Unknown keys and bad values are only warnings: any output at all fails the test.
    assert (finished.returncode, finished.stdout + finished.stderr) == (0, "")


@pytest.mark.parametrize("unit", INSTANCES.values())
def test_security_exposure_is_at_most_two(unit: str, root: Path, tool: FindTool) -> None:
    finished = subprocess.run(
        [
            tool("systemd-analyze"),
            "security",
            "--offline=yes",
            "--threshold=20",
            f"--root={root}",
            unit,
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert finished.returncode == 0, finished.stdout[-2000:] + finished.stderr


@pytest.mark.parametrize("unit", INSTANCES)
def test_unit_is_hardened_and_writes_only_its_data_directory(unit: str) -> None:
    found = settings(unit)
    for key, value in HARDENING.items():
        assert found.get(key) == [value], f"{unit}: {key}={value} expected, got {found.get(key)}"
    (state,) = found["StateDirectory"]
    assert found["ReadWritePaths"] == [f"/var/lib/{state}"]
    assert found["WorkingDirectory"] == [f"/var/lib/{state}"]
    (command,) = found["ExecStart"]
    assert command.startswith(f"/{EXECUTABLE} ")


def test_web_unit_runs_the_web_desk_from_the_node_configuration() -> None:
    unit = settings("certfed-web@.service")
    assert unit["ExecStart"] == [
        "/opt/certfed/bin/certfed web serve --config /etc/certfed/%i/node.toml"
    ]
    # Its only writable place is its own state directory, where the unit's comment tells the
    # office to put [web] secret_file.
    assert unit["ReadWritePaths"] == ["/var/lib/certfed/web-%i"]
    text = (UNITS / "certfed-web@.service").read_text(encoding="utf-8")
    assert 'secret_file = "/var/lib/certfed/web-%i/web.secret"' in text


def test_the_day_s_reminders_are_sent_daily_after_the_cycle_and_a_partial_run_succeeds() -> None:
    unit = settings("certfed-notify@.service")
    assert unit["Type"] == ["oneshot"]
    assert unit["ExecStart"] == [
        "/opt/certfed/bin/certfed notify run --config /etc/certfed/%i/node.toml "
        "$CERTFED_NOTIFY_ARGS"
    ]
    # The admin token and the gateway options come from a file only certfed reads.
    assert unit["EnvironmentFile"] == ["/etc/certfed/%i/notify.env"]
    # Exit status 2: some reminders left for the office (no phone number, refused), listed.
    assert unit["SuccessExitStatus"] == ["2"]
    timer = settings("certfed-notify@.timer")
    assert timer["Persistent"] == ["true"]
    (calendar,) = timer["OnCalendar"]
    hour = int(calendar.split()[1].split(":")[0])
    default_cycle_hour = next(
        f.default for f in dataclasses.fields(NodeConfig) if f.name == "cycle_hour_utc"
    )
    assert hour > default_cycle_hour
    assert calendar.endswith(" UTC")
