"""The registry as a process and through its CLI: `serve` writes its ready file with the bound
ports, answers health checks, stops cleanly on SIGTERM and removes the file; the admin commands
work against it and fail with one line and a non-zero exit code."""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from cli.registry_commands import add_registry_commands
from federation.registry_client import RegistryClient
from federation.transport import anonymous_channel_credentials
from registry.config import RegistryPaths
from registry.provision import init_registry
from signing import dsse

if TYPE_CHECKING:
    from conftest import NodeFactory

REPOSITORY = Path(__file__).resolve().parents[3]
SERVE = (
    "import sys; from pathlib import Path; from registry.config import load_registry_config; "
    "from registry.server import serve; sys.exit(serve(load_registry_config(Path(sys.argv[1]))))"
)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="certfed")
    add_registry_commands(parser.add_subparsers(dest="command", required=True))
    return parser


def run_cli(*argv: str) -> int:
    args = _parser().parse_args(["registry", *argv])
    code: int = args.handler(args)
    return code


def _wait_for(path: Path, process: subprocess.Popen[bytes], deadline_s: float = 30.0) -> dict:  # type: ignore[type-arg]
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"registry exited early with {process.returncode}")
        if path.exists():
            return json.loads(path.read_text(encoding="utf-8"))  # type: ignore[no-any-return]
        time.sleep(0.05)
    raise AssertionError(f"{path} did not appear within {deadline_s}s")


@pytest.fixture
def served_registry(tmp_path: Path) -> Iterator[tuple[Path, dict[str, int]]]:
    data_dir = tmp_path / "registry"
    assert run_cli("init", "--data-dir", str(data_dir), "--federation-id", "test-fed") == 0
    config = data_dir / "registry.toml"
    text = config.read_text(encoding="utf-8")
    text = text.replace('listen = "127.0.0.1:7400"', 'listen = "127.0.0.1:0"')
    text = text.replace('enrol_listen = "127.0.0.1:7401"', 'enrol_listen = "127.0.0.1:0"')
    config.write_text(text, encoding="utf-8")
    environment = {
        **os.environ,
        "PYTHONPATH": f"{REPOSITORY / 'proto'}{os.pathsep}{REPOSITORY}",
    }
    process = subprocess.Popen(
        [sys.executable, "-c", SERVE, str(config)],
        env=environment,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    ready_file = RegistryPaths(data_dir).ready_file
    try:
        ready = _wait_for(ready_file, process)
        yield config, ready
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
        assert not ready_file.exists()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)
        if process.stderr is not None:
            process.stderr.close()


def test_serve_writes_ready_file_and_stops_cleanly_on_sigterm(
    served_registry: tuple[Path, dict[str, int]],
) -> None:
    config, ready = served_registry
    assert ready["mtls"] > 0
    assert ready["enrol"] > 0
    assert ready["mtls"] != ready["enrol"]
    assert ready["pid"] > 0
    assert run_cli("list", "--config", str(config)) == 0


def test_admin_commands_approve_suspend_list_and_export_the_directory(
    served_registry: tuple[Path, dict[str, int]],
    make_node: NodeFactory,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    config, ready = served_registry
    ca = (config.parent / "trust" / "ca.pem").read_bytes()
    node = make_node("foshan-paying")
    with RegistryClient(f"127.0.0.1:{ready['enrol']}", anonymous_channel_credentials(ca)) as c:
        c.enrol(node.application())

    fingerprints = node.fingerprints
    assert run_cli("list", "--config", str(config)) == 0
    assert f"signing key: {fingerprints.signing_key}\n" in capsys.readouterr().out
    assert (
        run_cli(
            "approve",
            "foshan-paying",
            "--signing-key-fingerprint",
            fingerprints.signing_key.replace(" ", ":").lower(),
            "--tls-key-fingerprint",
            fingerprints.tls_key,
            "--config",
            str(config),
        )
        == 0
    )
    approved = capsys.readouterr().out
    assert fingerprints.tls_key in approved
    assert "directory version 2" in approved
    assert (
        run_cli("suspend", "foshan-paying", "--reason", "office audit", "--config", str(config))
        == 0
    )
    assert run_cli("list", "--config", str(config)) == 0
    listing = capsys.readouterr().out
    assert "foshan-paying" in listing
    assert "suspended" in listing
    assert run_cli("reinstate", "foshan-paying", "--config", str(config)) == 0

    out = tmp_path / "directory.json"
    assert run_cli("export-directory", "--config", str(config), "--out", str(out)) == 0
    envelope = dsse.Envelope.from_json(out.read_bytes())
    assert envelope.payload_type == dsse.DIRECTORY_PAYLOAD_TYPE


def test_failed_admin_command_prints_one_line_and_exits_non_zero(
    served_registry: tuple[Path, dict[str, int]], capsys: pytest.CaptureFixture[str]
) -> None:
    config, _ = served_registry
    capsys.readouterr()
    fingerprint = "00" * 32
    assert (
        run_cli(
            "approve",
            "nobody-here",
            "--signing-key-fingerprint",
            fingerprint,
            "--tls-key-fingerprint",
            fingerprint,
            "--config",
            str(config),
        )
        == 1
    )
    error = capsys.readouterr().err
    assert error.startswith("error: NOT_FOUND: ")
    assert error.count("\n") == 1
    assert (
        run_cli(
            "revoke",
            "nobody-here",
            "--reason",
            "x",
            "--effective-at",
            "2025-01-01T00:00:00",
            "--config",
            str(config),
        )
        == 1
    )
    assert "--effective-at" in capsys.readouterr().err


def test_init_refuses_to_overwrite_existing_keys(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    init_registry(tmp_path, "test-fed")
    root_key = (tmp_path / "root.key").read_bytes()
    assert run_cli("init", "--data-dir", str(tmp_path)) == 1
    assert "refusing to overwrite" in capsys.readouterr().err
    assert (tmp_path / "root.key").read_bytes() == root_key


def test_command_against_a_stopped_registry_fails_with_unavailable(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    init_registry(tmp_path, "test-fed")
    config = tmp_path / "registry.toml"
    text = config.read_text(encoding="utf-8").replace("127.0.0.1:7400", "127.0.0.1:9")
    config.write_text(text.replace("call_timeout_s = 10.0", "call_timeout_s = 2.0"))
    assert run_cli("list", "--config", str(config)) == 1
    assert capsys.readouterr().err.startswith("error: UNAVAILABLE: ")
