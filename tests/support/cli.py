"""Running the real CLI in a subprocess, as a user or a service would."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def run_monitor(config: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """``news-monitor --config CONFIG ARGS...`` from the config's folder, with none of the
    caller's ``NEWS_MONITOR*`` variables; output captured as text."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("NEWS_MONITOR")}
    return subprocess.run(
        [sys.executable, "-m", "monitor", "--config", str(config), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        cwd=config.parent,
    )
