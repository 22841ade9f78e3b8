"""Material for docs/events.md: the JSON Schema export and generated examples of every event type."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import polars as pl

from shoppulse.contract.events import CONTRACT_VERSION, EventType, json_schema
from simulator.catalog import build_catalog
from simulator.encode import Encoder
from simulator.faults import EventDecisions
from simulator.model import HOUR_MS, Shop

EXAMPLE_START_MS = 1_748_865_600_000  # 2025-06-02T12:00:00Z, a fixed time so examples are stable


def schema_text() -> str:
    """The contract's JSON Schema (draft 2020-12), as committed in docs/events.schema.json."""
    document = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "ShopPulse event",
        "description": (
            f"One ShopPulse event (one Kafka message), contract version {CONTRACT_VERSION}. "
            "Generated from shoppulse/contract/events.py by `python -m simulator schema`; see docs/events.md."
        ),
        **json_schema(),
    }
    return json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def example_events(seed: int = 1) -> dict[str, str]:
    """One generated message per event type (plus a schema-v2 page view), as JSON text."""
    catalog = build_catalog()
    shop = Shop(catalog, seed=seed)
    shop.seed_population(1_000)
    encoder = Encoder(catalog, seed)
    events = shop.generate(EXAMPLE_START_MS, EXAMPLE_START_MS + 2 * HOUR_MS, 4_000 / HOUR_MS)
    session_variant = np.zeros(events.sessions.height, dtype=np.uint8)
    session_variant[0] = 2  # the first session uses schema version 2
    decisions = EventDecisions(
        late_delay_ms={t: np.zeros(f.height, dtype=np.int64) for t, f in events.frames.items()},
        late_kind={t: np.zeros(f.height, dtype=np.uint8) for t, f in events.frames.items()},
        variant={
            t: session_variant[f["srow"].to_numpy()] if "srow" in f.columns else np.zeros(f.height, dtype=np.uint8)
            for t, f in events.frames.items()
        },
        session_variant=session_variant,
    )
    encoded = encoder.encode(events, decisions)
    examples: dict[str, str] = {}
    for event_type in EventType:
        rows = encoded.filter(pl.col("payload").str.contains(f'"event_type":"{event_type.value}"', literal=True))
        rows = rows.sort("ts", maintain_order=True)
        if event_type in (EventType.ORDER_PLACED, EventType.ORDER_CANCELLED, EventType.REFUND):
            # prefer an example with a discount and more than one line
            richer = rows.filter(
                pl.col("payload").str.contains('"discount":[1-9]') & pl.col("payload").str.contains("},{", literal=True)
            )
            rows = richer if richer.height else rows
        examples[event_type.value] = rows.filter(~pl.col("v2"))["payload"][0]
    examples["page_view (schema_version 2)"] = encoded.filter(pl.col("v2")).sort("ts", maintain_order=True)["payload"][
        0
    ]
    return examples


EXAMPLE_BLOCK = re.compile(r"```json\n(.*?)\n```", flags=re.S)


def update_examples(path: Path, seed: int = 1) -> bool:
    """Replace the ```json blocks of `path` (in order) with the current examples; True if it changed."""
    text = Path(path).read_text()
    examples = list(example_events(seed).values())
    blocks = EXAMPLE_BLOCK.findall(text)
    if len(blocks) != len(examples):
        raise ValueError(f"{path} has {len(blocks)} JSON examples, the generator makes {len(examples)}")
    replacements = iter(examples)
    updated = EXAMPLE_BLOCK.sub(lambda _: "```json\n" + next(replacements) + "\n```", text)
    if updated != text:
        Path(path).write_text(updated)
    return updated != text
