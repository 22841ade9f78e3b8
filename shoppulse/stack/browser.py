"""The browser the dashboard tests drive: Debian's `chromium`, installed with apt when missing (root only).

`SHOPPULSE_CHROMIUM` names another Chromium-family executable instead (nothing is installed then).
Playwright drives it through `executable_path`; it never downloads a browser of its own.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

from shoppulse.settings import Settings
from shoppulse.stack.errors import StackError


def ensure_chromium(settings: Settings) -> str:
    """Path of the Chromium executable, installing Debian's `chromium` package if needed."""
    if settings.chromium:
        found = shutil.which(settings.chromium)
        if found is None:
            raise StackError(f"SHOPPULSE_CHROMIUM={settings.chromium!r} is not an executable")
        return found
    found = shutil.which("chromium")
    if found is not None:
        return found
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        raise StackError(
            "Chromium not found (the dashboard tests drive it): install it (apt-get install chromium), "
            "or set SHOPPULSE_CHROMIUM to a Chromium executable"
        )
    print("Chromium not found: installing Debian's 'chromium' package (apt-get) for the browser tests", file=sys.stderr)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for cmd in (
        ["apt-get", "update", "-qq"],
        ["apt-get", "install", "-y", "-qq", "--no-install-recommends", "chromium"],
    ):
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
        if proc.returncode != 0:
            raise StackError(f"'{' '.join(cmd)}' failed: {(proc.stderr or proc.stdout).strip()[-300:]}")
    found = shutil.which("chromium")
    if found is None:
        raise StackError("installed 'chromium' but found no `chromium` executable on PATH")
    return found
