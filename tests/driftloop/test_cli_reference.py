"""The README's command table must list exactly the `driftloop` commands, with real options."""

from __future__ import annotations

import re
from typing import Any

import pytest
import typer

from driftloop.cli import app
from driftloop.config_reference import README

#: Options described once above the table rather than in each row.
SAID_ONCE = {"--config", "-c", "--verbose", "--help"}


def command_table(text: str) -> dict[str, str]:
    """{command name: its row's first cell} of the table under the README's `## Commands`."""
    try:
        section = text.split("\n## Commands\n", 1)[1].split("\n## ", 1)[0]
    except IndexError:
        raise ValueError("README.md has no `## Commands` section") from None
    table: dict[str, str] = {}
    for line in section.splitlines():
        match = re.match(r"\| `driftloop ([a-z-]+)([^`]*)` \|", line)
        if match:
            if match.group(1) in table:
                raise ValueError(f"the command table lists {match.group(1)!r} twice")
            table[match.group(1)] = match.group(2)
    return table


def commands() -> dict[str, Any]:
    """The app's commands (typer's own click objects: typer vendors click)."""
    return dict(typer.main.get_command(app).commands)  # type: ignore[attr-defined]


def option_params(command: Any) -> list[Any]:
    return [p for p in command.params if p.param_type_name == "option"]


def options(command: Any) -> set[str]:
    return {
        flag for param in option_params(command) for flag in (*param.opts, *param.secondary_opts)
    }


def test_the_table_lists_every_command_and_no_other() -> None:
    listed, real = set(command_table(README.read_text())), set(commands())
    assert listed - real == set(), "the README lists commands the CLI does not have"
    assert real - listed == set(), "the README's command table lacks these commands"


@pytest.mark.parametrize("name", sorted(commands()))
def test_each_row_names_only_real_options_and_every_option(name: str) -> None:
    cell = command_table(README.read_text()).get(name, "")
    written = set(re.findall(r"(?<![\w-])--?[a-z][a-z-]*", cell))
    command = commands()[name]
    # a short alias (`-v`) may stand for its long name; every long option must be written
    real = options(command)
    long_names = {
        next(flag for flag in param.opts if flag.startswith("--"))
        for param in option_params(command)
    }
    assert written - real == set(), f"`driftloop {name}` has no such option"
    assert long_names - SAID_ONCE - written == set(), f"`driftloop {name}`'s row lacks options"


def test_a_readme_without_the_section_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="no `## Commands` section"):
        command_table("# driftloop\n")
