"""Injected incidents: an outage stops sessions from starting, a spike multiplies them, and the ground
truth records when (CLI `--outage` / `--spike`)."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from simulator.catalog import build_catalog
from simulator.cli import main
from simulator.faults import Incident
from simulator.model import HOUR_MS, Behaviour, Shop

START_MS = int(dt.datetime(2026, 11, 19, tzinfo=dt.UTC).timestamp() * 1000)
OUTAGE = Incident("outage", START_MS + 10 * HOUR_MS, START_MS + 12 * HOUR_MS, 0.0)
SPIKE = Incident("spike", START_MS + 18 * HOUR_MS, START_MS + 19 * HOUR_MS, 4.0)


def session_starts(incidents: tuple[Incident, ...]) -> np.ndarray:
    shop = Shop(build_catalog(5000), seed=4, behaviour=Behaviour(), seasonal=True, incidents=incidents)
    return shop.session_starts(START_MS, START_MS + 24 * HOUR_MS, 600 / HOUR_MS)


def per_hour(starts: np.ndarray) -> np.ndarray:
    return np.bincount((starts - START_MS) // HOUR_MS, minlength=24)


def test_an_outage_stops_sessions_and_a_spike_multiplies_them() -> None:
    usual, changed = per_hour(session_starts(())), per_hour(session_starts((OUTAGE, SPIKE)))
    assert changed[10] == changed[11] == 0 and usual[10] > 300
    assert 3.3 * usual[18] < changed[18] < 4.7 * usual[18]
    assert changed[9] > 0 and changed[12] > 0


def test_incidents_are_validated() -> None:
    with pytest.raises(ValueError, match="factor"):
        Incident("spike", 0, HOUR_MS, 0.5)
    with pytest.raises(ValueError, match="end after"):
        Incident("outage", HOUR_MS, HOUR_MS, 0.0)
    with pytest.raises(ValueError, match="kind"):
        Incident("flood", 0, HOUR_MS, 2.0)


def test_cli_records_the_incidents_in_the_ground_truth(tmp_path: Path) -> None:
    truth = tmp_path / "truth.json"
    args = ["history", "--days", "1", "--events-per-day", "3000", "--end", "2026-11-20T00:00", "--seed", "3"]
    args += ["--dry-run", "--no-progress", "--ground-truth", str(truth)]
    args += ["--outage", "2026-11-19T10:00/2h", "--spike", "2026-11-19T18:00/1h/4"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    incidents = json.loads(truth.read_text())["run"]["incidents"]
    assert incidents == [OUTAGE.describe(), SPIKE.describe()]
    assert incidents[0]["start"] == "2026-11-19T10:00:00.000Z" and incidents[0]["end"] == "2026-11-19T12:00:00.000Z"
    bad = CliRunner().invoke(main, [*args[:-4], "--spike", "2026-11-19T18:00/1h/0.5"])
    assert bad.exit_code == 2 and "factor" in bad.output
