"""Every command's --help: an example kept verbatim, and help text for every option."""

from __future__ import annotations

import click
import pytest
from click.testing import CliRunner

from monitor.app.cli import cli


def _commands(group: click.Group, prefix: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], click.Command]]:
    out: list[tuple[tuple[str, ...], click.Command]] = []
    for name, command in sorted(group.commands.items()):
        path = (*prefix, name)
        out.append((path, command))
        if isinstance(command, click.Group):
            out.extend(_commands(command, path))
    return out


COMMANDS = _commands(cli)


@pytest.mark.parametrize(("path", "command"), COMMANDS, ids=lambda v: " ".join(v) if isinstance(v, tuple) else "")
def test_help_shows_the_example_verbatim_and_every_option_explained(
    path: tuple[str, ...], command: click.Command
) -> None:
    result = CliRunner().invoke(cli, [*path, "--help"], terminal_width=80)
    assert result.exit_code == 0, result.output
    doc = command.help or ""
    assert "Example:" in doc, f"{' '.join(path)} has no example"
    example = doc.split("Example:", 1)[1]
    lines = [line.strip() for line in example.splitlines() if line.strip() and line.strip() != "\b"]
    assert lines, f"{' '.join(path)}: an empty example"
    for line in lines:
        assert any(line == out.strip() for out in result.output.splitlines()), f"example rewrapped: {line}"
    for param in command.params:
        if isinstance(param, click.Option) and not param.hidden:
            assert param.help, f"{' '.join(path)} {param.opts[0]} has no help text"
