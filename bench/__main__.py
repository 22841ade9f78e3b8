"""`make bench` / `python -m bench`: every benchmark in turn, each printing its numbers and ratios.

    uv run python -m bench            # the default set, at their default sizes (about 15 minutes on 2 cores)
    uv run python -m bench ingest api # some of them
    uv run python -m bench volume     # freshness with 10M events already in today (~30 min: the preload)
    uv run python -m bench celery     # a backfill on one vs two Celery workers

Each benchmark measures its baseline in the same run (these machines are noisy: compare ratios).
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
BENCHMARKS = {
    "simulator": ["simulator_throughput.py"],
    "ingest": ["ingest.py"],
    "freshness": ["freshness.py"],
    "backfill": ["backfill.py", "--repeat", "3"],
    "api": ["api_load.py"],
    "volume": ["freshness_at_volume.py", "--modes", "fold", "recompute"],
    "celery": ["celery_backfill.py"],
}
DEFAULT = ["simulator", "ingest", "freshness", "backfill", "api"]
"""What `make bench` runs; `volume` and `celery` take long or need Redis, so they run when named."""


def main(names: list[str]) -> int:
    unknown = [n for n in names if n not in BENCHMARKS]
    if unknown:
        print(f"unknown benchmark(s) {unknown}; choose from {list(BENCHMARKS)}", file=sys.stderr)
        return 2
    failed = []
    for name in names or DEFAULT:
        print(f"\n=== {name} " + "=" * (70 - len(name)), flush=True)
        began = time.monotonic()
        code = subprocess.call([sys.executable, str(HERE / BENCHMARKS[name][0]), *BENCHMARKS[name][1:]])
        print(f"--- {name}: exit {code} after {time.monotonic() - began:.0f}s", flush=True)
        if code:
            failed.append(name)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
