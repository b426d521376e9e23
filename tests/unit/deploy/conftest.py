"""The `tool` fixture of the deploy/ validations: an outside tool found, or the test failed (never
skipped) naming the package that provides it."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

from tests.unit.deploy.deploy_files import TOOL_SOURCES, FindTool


@pytest.fixture
def tool() -> FindTool:
    """tool(name) -> its path; fails the test, naming what to install, when it is missing."""

    def find(name: str) -> str:
        # The venv's scripts first: hadolint comes with the dev dependencies.
        path = shutil.which(name, path=str(Path(sys.executable).parent)) or shutil.which(name)
        if path is None:
            pytest.fail(f"{name} is not installed: install {TOOL_SOURCES[name]}")
        return path

    return find
