"""Rewrite the settings table of docs/configuration.md from the one settings object.

    uv run python scripts/configuration_table.py

Every row is (variable, default, description) of `shoppulse.settings.environment_variables()`;
tests/stack/test_readme.py checks that the committed table matches the code.
"""

from __future__ import annotations

import re

from shoppulse.settings import PROJECT_ROOT, environment_variables

DOC = PROJECT_ROOT / "docs" / "configuration.md"
HEADER = "| variable | default | meaning |\n|---|---|---|\n"


def table() -> str:
    rows = (
        f"| `{variable}` | {f'`{default}`' if default else '—'} | {description} |"
        for variable, default, description in environment_variables()
    )
    return HEADER + "\n".join(rows) + "\n"


def main() -> None:
    text = DOC.read_text()
    start = text.index(HEADER)
    end = re.compile(r"^(?!\|)", re.M).search(text, start + len(HEADER))
    stop = end.start() if end else len(text)
    DOC.write_text(text[:start] + table() + text[stop:])


if __name__ == "__main__":
    main()
