"""What the tests that run the ``brain`` command share: a clean environment and the
one-line-error check."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path


def clean_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """The environment without the caller's BRAIN_* and PREFECT_* settings, with a fresh
    home and Prefect folder under ``tmp_path``, and ``extra`` on top."""
    base = {k: v for k, v in os.environ.items() if not k.startswith(("BRAIN_", "PREFECT_"))}
    base.update(
        BRAIN_HOME=str(tmp_path / "home"),
        PREFECT_HOME=str(tmp_path / "prefect"),
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
    )
    base.update(extra)
    return base


def one_line_error(proc: subprocess.CompletedProcess[str], needle: str) -> None:
    """The command failed with one ``error:`` line naming ``needle``, no traceback."""
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr + proc.stdout
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("error: ") and needle in lines[0], lines[0]
