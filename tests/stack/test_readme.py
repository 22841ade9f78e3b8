"""The README a new user starts from: the two commands first, short; every setting documented in
docs/configuration.md."""

from __future__ import annotations

import re

from shoppulse.settings import PROJECT_ROOT, environment_variables

README = (PROJECT_ROOT / "README.md").read_text()
CONFIGURATION = (PROJECT_ROOT / "docs" / "configuration.md").read_text()


def test_readme_starts_with_the_two_commands() -> None:
    first_block = re.search(r"```sh\n(.*?)```", README, re.S)
    assert first_block is not None
    commands = [line.split("#")[0].strip() for line in first_block.group(1).splitlines() if line.strip()]
    assert commands == ["make run", "make test"]
    assert README.index("```sh") < README.index("## ")  # before any section


def configuration_rows(text: str) -> dict[str, str]:
    """Variable -> default column of the markdown configuration table in `text`."""
    return dict(re.findall(r"^\| `([A-Z0-9_]+)` \| ([^|]*) \|", text, re.M))


def shown_default(default: str) -> str:
    return f"`{default}`" if default else "—"


def test_every_setting_is_in_the_configuration_table() -> None:
    """docs/configuration.md documents every setting with its real default; the README links it."""
    rows = configuration_rows(CONFIGURATION)
    for variable, default, _ in environment_variables():
        assert variable in rows, f"{variable} is not documented in docs/configuration.md"
        shown = rows[variable].strip()
        assert shown == shown_default(default), f"{variable}: docs say {shown}, code says {default!r}"
    assert "docs/configuration.md" in README[README.index("## Configuration") :]


def test_the_readmes_short_configuration_table_is_right() -> None:
    rows = configuration_rows(README[README.index("## Configuration") :])
    defaults = {variable: default for variable, default, _ in environment_variables()}
    assert rows, "the README shows the settings a newcomer touches"
    for variable, shown in rows.items():
        assert variable in defaults, f"README documents {variable}, which is no setting"
        assert shown.strip() == shown_default(defaults[variable]), variable


def test_the_readme_stays_a_short_newcomers_page() -> None:
    assert len(README.encode()) < 9_000
    for heading in ("## What to do first", "## Configuration"):
        assert heading in README
    assert (PROJECT_ROOT / "docs" / "img" / "dashboard.png").is_file()


def test_makefile_targets_the_readme_names_exist() -> None:
    makefile = (PROJECT_ROOT / "Makefile").read_text()
    for target in ("run", "test", "bench"):
        assert re.search(rf"^{target}:", makefile, re.M), target
    assert "make test" in (PROJECT_ROOT / ".ci" / "run").read_text()
