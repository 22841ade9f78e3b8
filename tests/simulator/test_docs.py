"""docs/events.md and docs/events.schema.json match the contract and the generator."""

from __future__ import annotations

import json
import re
from pathlib import Path

from click.testing import CliRunner

from shoppulse.contract.events import CONTRACT_VERSION, EventType, parse_event
from simulator.cli import main
from simulator.docs import example_events, schema_text

DOCS = Path(__file__).resolve().parents[2] / "docs"


def test_committed_json_schema_is_up_to_date() -> None:
    assert (DOCS / "events.schema.json").read_text() == schema_text(), (
        "run: python -m simulator schema --output docs/events.schema.json"
    )


def test_schema_check_command_reports_a_stale_file(tmp_path: Path) -> None:
    stale = tmp_path / "events.schema.json"
    stale.write_text("{}\n")
    runner = CliRunner()
    check = ["schema", "--output", str(stale), "--check"]
    assert runner.invoke(main, check).exit_code != 0
    assert runner.invoke(main, ["schema", "--output", str(stale)]).exit_code == 0
    assert runner.invoke(main, check).exit_code == 0
    assert json.loads(stale.read_text())["description"].startswith("One ShopPulse event")


def test_documented_examples_are_current_generated_and_valid() -> None:
    text = (DOCS / "events.md").read_text()
    assert f"Contract version {CONTRACT_VERSION}" in text
    blocks = re.findall(r"```json\n(.*?)\n```", text, flags=re.S)
    assert blocks == list(example_events().values()), "run: python -m simulator examples --update docs/events.md"
    types = {parse_event(block).event_type for block in blocks}
    assert types == set(EventType)
    assert any(parse_event(block).schema_version == 2 for block in blocks)
