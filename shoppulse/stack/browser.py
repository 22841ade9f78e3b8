"""The browser the dashboard tests drive: Debian's `chromium`, installed with apt when missing (root only).

`SHOPPULSE_CHROMIUM` names another Chromium-family executable instead (nothing is installed then).
Playwright drives it through `executable_path`; it never downloads a browser of its own.
"""

from __future__ import annotations

import shutil

from shoppulse.settings import Settings
from shoppulse.stack.debian import binary_from_package
from shoppulse.stack.errors import StackError


def ensure_chromium(settings: Settings) -> str:
    """Path of the Chromium executable, installing Debian's `chromium` package if needed."""
    if settings.chromium:
        found = shutil.which(settings.chromium)
        if found is None:
            raise StackError(f"SHOPPULSE_CHROMIUM={settings.chromium!r} is not an executable")
        return found
    return binary_from_package(
        "chromium",
        ["chromium"],
        "the dashboard's browser tests drive Chromium",
        "install it (apt-get install chromium), or set SHOPPULSE_CHROMIUM to a Chromium executable",
    )
