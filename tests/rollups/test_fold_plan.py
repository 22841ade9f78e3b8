"""Cutting a fold into steps of bounded size (pure functions over row counts)."""

from __future__ import annotations

import random

import pytest

from shoppulse.rollups.incremental.plan import file_chunks, fold_steps


def test_steps_end_before_the_commit_that_would_overflow() -> None:
    added = [(11, 300), (12, 300), (15, 300), (16, 900), (17, 100)]
    assert fold_steps(added, 20, 700) == [14, 15, 16, 20]  # 600 | 300 | 900 (alone, over) | 100 (+ up to 20)
    assert fold_steps([], 20, 700) == [20]
    assert fold_steps(added, 20, 10_000) == [20]


@pytest.mark.parametrize("seed", range(20))
def test_every_step_holds_at_most_the_bound_unless_one_commit_is_bigger(seed: int) -> None:
    rng = random.Random(seed)
    version, added = 3, []
    for _ in range(rng.randrange(0, 40)):
        version += rng.randrange(1, 4)
        added.append((version, rng.randrange(1, 500)))
    until, bound = version + rng.randrange(0, 3), rng.randrange(1, 1200)
    steps = fold_steps(added, until, bound)
    assert steps == sorted(steps) and steps[-1] == until and len(set(steps)) == len(steps)
    for low, high in zip([3, *steps], steps, strict=False):
        inside = [rows for v, rows in added if low < v <= high]
        assert sum(inside) <= bound or len(inside) == 1
    assert sum(rows for _, rows in added) == sum(rows for v, rows in added if 3 < v <= until)


@pytest.mark.parametrize("seed", range(20))
def test_file_chunks_cover_every_file_once_within_the_bound(seed: int) -> None:
    rng = random.Random(seed)
    rows = [rng.randrange(0, 300) for _ in range(rng.randrange(0, 30))]
    bound = rng.randrange(1, 700)
    chunks = file_chunks(rows, bound)
    assert [i for chunk in chunks for i in chunk] == list(range(len(rows)))
    assert all(sum(rows[i] for i in chunk) <= bound or len(chunk) == 1 for chunk in chunks)
    assert all(len(chunk) for chunk in chunks)
