"""Imported last by the run launcher's fork server: loads the code location, then freezes everything loaded
so far out of the cyclic garbage collector.

- A forked run worker finds the code location imported: it does not compile and execute the project's
  modules again (~0.15-0.3 s of CPU a run). If any of their source files changed since, the worker
  forgets them first (`forget_changed_code`) and imports them afresh, so a run always executes the code
  on disk, as with a freshly spawned worker.
- A worker inherits ~200k tracked objects; each of its full collections used to walk them all (100-250
  ms here, and a copy-on-write fault on every page it touched). Frozen, they are never scanned.

A code location that fails to import is left to the worker, whose run then fails with the error.
"""

from __future__ import annotations

import gc
import importlib
import logging
import sys
from pathlib import Path

from shoppulse.settings import CODE_LOCATION_MODULE

PROJECT_PACKAGES = ("pipelines", "assets", "resources", "shoppulse")

logger = logging.getLogger(__name__)


def _project_modules() -> dict[str, Path]:
    """Loaded modules of the project's packages, with their source files."""
    modules = {}
    for name, module in list(sys.modules.items()):
        source = getattr(module, "__file__", None)
        if source and name.split(".")[0] in PROJECT_PACKAGES:
            modules[name] = Path(source)
    return modules


def _fingerprint(sources: dict[str, Path]) -> dict[str, tuple[int, int]]:
    stamps = {}
    for name, path in sources.items():
        try:
            stat = path.stat()
        except OSError:
            stamps[name] = (-1, -1)
        else:
            stamps[name] = (stat.st_mtime_ns, stat.st_size)
    return stamps


try:
    importlib.import_module(CODE_LOCATION_MODULE)
except Exception:  # the worker imports it again and its run reports the error
    logger.exception("the fork server could not preload %s", CODE_LOCATION_MODULE)
_PRELOADED = _project_modules()
_STAMPS = _fingerprint(_PRELOADED)
gc.freeze()


def forget_changed_code() -> bool:
    """In a run worker: if a preloaded project source file changed (or vanished) since the fork server
    loaded it, drop every preloaded project module so the run imports the code on disk. Returns whether
    it did."""
    if _fingerprint(_PRELOADED) == _STAMPS:
        return False
    for name in _PRELOADED:
        sys.modules.pop(name, None)
    return True
