"""Debian packages the stack installs when a service it starts is missing (PostgreSQL, Chromium,
Prometheus, Redis): one apt-get path, root only, saying what it installs and why."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Sequence

from shoppulse.stack.errors import StackError


def can_install() -> bool:
    """apt-get is there and we are root (CI and these machines); elsewhere the user installs it."""
    return os.geteuid() == 0 and shutil.which("apt-get") is not None


def apt_install(packages: Sequence[str], why: str, otherwise: str) -> None:
    """Install `packages` with apt-get, printing `why`; StackError saying `otherwise` (what the user can
    do instead) when this machine cannot install, or apt-get's own error when it fails."""
    if not can_install():
        raise StackError(f"{why}: {', '.join(packages)} not installed and cannot be installed here; {otherwise}")
    print(f"stack: installing Debian's {', '.join(packages)} with apt-get ({why})", file=sys.stderr)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for argv in (
        ["apt-get", "update", "-qq"],
        ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *packages],
    ):
        done = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise StackError(f"'{' '.join(argv)}' failed: {(done.stderr or done.stdout).strip()[-2000:]}")


def binary_from_package(binary: str, packages: Sequence[str], why: str, otherwise: str) -> str:
    """The path of `binary`, installing `packages` first when it is not on PATH."""
    found = shutil.which(binary)
    if found is not None:
        return found
    apt_install(packages, why, otherwise)
    found = shutil.which(binary)
    if found is None:
        raise StackError(f"installed {', '.join(packages)} but found no `{binary}` on PATH")
    return found
