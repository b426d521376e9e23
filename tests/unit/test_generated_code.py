"""The committed protobuf code is exactly what `make proto` produces from proto/.

Regenerates every `certfed/v1/*.proto` into a temporary directory with the command the Makefile
runs and compares the result byte for byte with the files committed beside the .proto files.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
PROTO_ROOT = REPO_ROOT / "proto"
PACKAGE_DIR = PROTO_ROOT / "certfed" / "v1"
GENERATED_SUFFIXES = ("_pb2.py", "_pb2.pyi", "_pb2_grpc.py", "_pb2_grpc.pyi")
FIX = "run `make proto` and commit the result"


def _generated_files(root: Path) -> dict[str, bytes]:
    """Generated files under root/certfed/v1, keyed by path relative to root."""
    package = root / "certfed" / "v1"
    return {
        path.relative_to(root).as_posix(): path.read_bytes()
        for path in sorted(package.iterdir())
        if path.is_file() and path.name.endswith(GENERATED_SUFFIXES)
    }


def _regenerate(out_dir: Path) -> None:
    protos = sorted(p.relative_to(REPO_ROOT).as_posix() for p in PACKAGE_DIR.glob("*.proto"))
    assert protos, f"no .proto files under {PACKAGE_DIR}"
    # The mypy-protobuf plugins (protoc-gen-mypy, protoc-gen-mypy_grpc) sit beside the
    # interpreter that runs grpc_tools, and protoc finds plugins on PATH.
    bin_dir = str(Path(sys.executable).parent)
    env = {**os.environ, "PATH": os.pathsep.join([bin_dir, os.environ.get("PATH", "")])}
    out = str(out_dir)
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "grpc_tools.protoc",
            "-Iproto",
            f"--python_out={out}",
            f"--mypy_out=quiet:{out}",
            f"--grpc_python_out={out}",
            f"--mypy_grpc_out=quiet:{out}",
            *protos,
        ],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    if result.returncode != 0:
        pytest.fail(f"protoc failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")


def _tracked_by_git(root: Path) -> set[str] | None:
    """Generated files git knows under root/certfed/v1 (relative to root), or None without git.

    `make test` regenerates files a checkout lacks, so presence on disk alone would let a
    never-committed file pass in CI; the git index tells what is really committed (or staged).
    """
    git = shutil.which("git")
    if git is None:
        return None
    result = subprocess.run(
        [git, "ls-files", "-z", "--", "certfed/v1"],
        cwd=root,
        capture_output=True,
        check=False,
        timeout=60,
    )
    if result.returncode != 0:  # not a git checkout (e.g. an sdist)
        return None
    names = result.stdout.decode().split("\0")
    return {n for n in names if n.endswith(GENERATED_SUFFIXES)}


def test_committed_generated_code_matches_a_fresh_protoc_run(tmp_path: Path) -> None:
    (tmp_path / "certfed" / "v1").mkdir(parents=True)
    _regenerate(tmp_path)

    expected = _generated_files(tmp_path)
    committed = _generated_files(PROTO_ROOT)
    assert expected, "protoc produced no files"

    missing = sorted(expected.keys() - committed.keys())
    extra = sorted(committed.keys() - expected.keys())
    stale = sorted(
        name for name in expected.keys() & committed.keys() if expected[name] != committed[name]
    )

    tracked = _tracked_by_git(PROTO_ROOT)
    if tracked is not None:
        missing = sorted(set(missing) | (expected.keys() - tracked))

    problems = []
    if missing:
        problems.append(f"missing (not committed): {', '.join(missing)}")
    if extra:
        problems.append(f"extra (no .proto produces them): {', '.join(extra)}")
    if stale:
        problems.append(f"differ from a fresh protoc run: {', '.join(stale)}")
    assert not problems, (
        "generated protobuf code is out of date; " + FIX + ":\n  " + "\n  ".join(problems)
    )
