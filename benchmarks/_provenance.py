"""What every benchmark records about the code it measured: the git commit and which of the
measured paths have uncommitted changes (shared by the scripts in this directory)."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]


def git_provenance(*paths: str, untracked: bool = False) -> dict[str, Any]:
    """``{"git_commit": short hash or None, "uncommitted": [changed files under paths]}``."""
    out: dict[str, Any] = {}
    try:
        git = ["git", "-C", str(REPO)]
        out["git_commit"] = subprocess.run([*git, "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                                           check=True).stdout.strip()
        flags = ["--untracked-files=all"] if untracked else []
        status = subprocess.run([*git, "status", "--porcelain", *flags, "--", *paths],
                                capture_output=True, text=True, check=True).stdout
        out["uncommitted"] = sorted(line[3:] for line in status.splitlines())
    except (OSError, subprocess.CalledProcessError):
        out["git_commit"] = None
    return out
