"""deploy/container/Containerfile: hadolint finds nothing to say, the build stage copies every
package the wheel is made of, and the runtime stage is the non-root, health-checked image that
the compose file, the Kubernetes manifests and the docs expect."""

from __future__ import annotations

import json
import re
import subprocess
import tomllib

from tests.unit.deploy.deploy_files import DEPLOY, ROOT, FindTool, known_settings

CONTAINERFILE = DEPLOY / "container" / "Containerfile"


def stages() -> list[list[tuple[str, str]]]:
    """The Containerfile's instructions, (INSTRUCTION, arguments), one list per FROM."""
    text = CONTAINERFILE.read_text(encoding="utf-8")
    logical = re.sub(r"\\\n", " ", text)
    result: list[list[tuple[str, str]]] = []
    for line in logical.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        instruction, _, arguments = line.partition(" ")
        if instruction.upper() == "FROM":
            result.append([])
        if result:
            result[-1].append((instruction.upper(), arguments.strip()))
    return result


def test_containerfile_passes_hadolint(tool: FindTool) -> None:
    finished = subprocess.run(
        [tool("hadolint"), "--failure-threshold", "info", str(CONTAINERFILE)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert finished.returncode == 0, finished.stdout + finished.stderr


def test_build_stage_copies_every_package_of_the_wheel() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    setuptools = project["tool"]["setuptools"]
    package_dirs = setuptools.get("package-dir", {})
    needed = {"pyproject.toml", "README.md", "constraints.txt"}
    for package in setuptools["packages"]:
        top = package.split(".")[0]
        needed.add(package_dirs.get(top, top).split("/")[0] + "/")
    build = stages()[0]
    copied = {
        source
        for instruction, arguments in build
        if instruction == "COPY"
        for source in arguments.split()[:-1]
    }
    assert needed <= copied, f"the build stage does not copy {sorted(needed - copied)}"
    for source in copied:
        assert (ROOT / source).exists(), f"COPY {source}: no such file in the repository"


def test_runtime_is_multi_stage_slim_non_root_and_health_checked() -> None:
    build, runtime = stages()[0], stages()[-1]
    assert len(stages()) >= 2
    base = dict(build)["FROM"]
    assert base.startswith("${PYTHON_IMAGE}")
    assert re.search(r"PYTHON_IMAGE=\S*python:3\.11-slim", CONTAINERFILE.read_text())
    instructions = dict(runtime)
    assert instructions["USER"] == "10001:10001"
    assert json.loads(instructions["ENTRYPOINT"]) == ["certfed"]
    health = instructions["HEALTHCHECK"]
    command = json.loads(health[health.index("CMD") + 3 :].strip())
    assert command[:2] == ["certfed", "health"]
    assert "--from=build" in instructions["COPY"]


def test_environment_variables_are_settings_certfed_reads() -> None:
    runtime = stages()[-1]
    names = {
        match.group(1)
        for instruction, arguments in runtime
        if instruction == "ENV"
        for match in re.finditer(r"(CERTFED_\w+)=", arguments)
    }
    assert names, "the image sets no CERTFED_ variable"
    assert names <= known_settings(), sorted(names - known_settings())
