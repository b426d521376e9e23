"""`certfed` as an operator runs it: `python -m cli` in a process of its own."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping

from cli.desk import TOKEN_ENV


def certfed(
    *arguments: str,
    token: str | None = None,
    env: Mapping[str, str] | None = None,
    timeout: float = 120,
    stdin: str | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run `certfed ARGUMENTS` to the end; its exit code and output, never raising on failure.

    Rich tables print 200 columns wide, unwrapped. `token` is the operator token a desk
    command reads from CERTFED_OPERATOR_TOKEN; `env` adds or replaces other variables;
    `stdin` is what the command reads on standard input (e.g. a password).
    """
    environment = {**os.environ, "COLUMNS": "200", **(env or {})}
    if token is not None:
        environment[TOKEN_ENV] = token
    return subprocess.run(
        [sys.executable, "-m", "cli", *arguments],
        capture_output=True,
        input=stdin,
        text=True,
        timeout=timeout,
        env=environment,
        check=False,
    )
