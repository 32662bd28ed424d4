"""Run the installed ``privaudit`` command as a user would, in a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

PRIVAUDIT = Path(sys.executable).with_name("privaudit")


def run_privaudit(*args: str, cwd: Path, columns: int = 200) -> subprocess.CompletedProcess[str]:
    """``privaudit ARGS...`` in ``cwd`` with a wide terminal; output captured as text."""
    env = {**os.environ, "PYTHONSAFEPATH": "1", "COLUMNS": str(columns)}
    return subprocess.run(
        [str(PRIVAUDIT), *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
