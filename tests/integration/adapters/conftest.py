"""A registry, a Macau liaison desk that pays pensions, a Qingdao residence agency and a Foshan
paying office, as real processes, shared by the adapter tests of one module."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from cli.launcher import LocalFederation
from tests.helpers.nodes import FOSHAN, MACAU
from tests.helpers.nodes import QINGDAO_AGENCY as QINGDAO


@pytest.fixture(scope="module")
def federation(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalFederation]:
    workdir: Path = tmp_path_factory.mktemp("adapters-federation")
    with LocalFederation(workdir, max_backoff_s=0.5) as local:
        local.start_registry()
        for spec in (MACAU, QINGDAO, FOSHAN):
            local.add_node(spec)
        yield local


@pytest.fixture(scope="module")
def office(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalFederation]:
    """Only the registry and the Foshan paying office: feeds, bank files and reminders stay
    inside one office."""
    workdir: Path = tmp_path_factory.mktemp("adapters-office")
    with LocalFederation(workdir, max_backoff_s=0.5) as local:
        local.start_registry()
        local.add_node(FOSHAN)
        yield local
