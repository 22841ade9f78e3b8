"""The README a new user starts from: the two commands first, every setting documented."""

from __future__ import annotations

import re

from shoppulse.settings import PROJECT_ROOT, environment_variables

README = (PROJECT_ROOT / "README.md").read_text()


def test_readme_starts_with_the_two_commands() -> None:
    first_block = re.search(r"```sh\n(.*?)```", README, re.S)
    assert first_block is not None
    commands = [line.split("#")[0].strip() for line in first_block.group(1).splitlines() if line.strip()]
    assert commands == ["make run", "make test"]
    assert README.index("```sh") < README.index("## ")  # before any section


def test_every_setting_is_in_the_configuration_table() -> None:
    table = README[README.index("## Configuration") :]
    for variable, default, _ in environment_variables():
        row = re.search(rf"^\| `{re.escape(variable)}` \| ([^|]*) \|", table, re.M)
        assert row is not None, f"{variable} is not documented in the README"
        shown = row.group(1).strip()
        assert shown == (f"`{default}`" if default else "—"), f"{variable}: README says {shown}, code says {default!r}"


def test_makefile_targets_the_readme_names_exist() -> None:
    makefile = (PROJECT_ROOT / "Makefile").read_text()
    for target in ("run", "test", "bench"):
        assert re.search(rf"^{target}:", makefile, re.M), target
    assert "make test" in (PROJECT_ROOT / ".ci" / "run").read_text()
