"""``vclock --help`` is the manual (issue 15, item 7): every command's summary in
full, every option explained, shell completion that works as docs/cli.md says.

The command tree is walked, so a new command or option is checked without
touching this file.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

import vclock
from vclock.cli import cli, main

CLI_DOC = (Path(__file__).resolve().parents[2] / "docs" / "cli.md").read_text(encoding="utf-8")


def commands(
    command: click.Command = cli, path: tuple[str, ...] = ("vclock",)
) -> Iterator[tuple[str, click.Command]]:
    """Every command of the tree, the groups included, with its full name."""
    yield " ".join(path), command
    if isinstance(command, click.Group):
        for name, sub in sorted(command.commands.items()):
            yield from commands(sub, (*path, name))


COMMANDS = dict(commands())
GROUPS = {name: cmd for name, cmd in COMMANDS.items() if isinstance(cmd, click.Group)}


def summary(command: click.Command) -> str:
    """The first sentence of the command's docstring: what --help lists."""
    return command.get_short_help_str(limit=10_000)


def help_text(name: str, width: int = 80) -> str:
    """What ``vclock ... --help`` prints in a terminal ``width`` columns wide."""
    result = CliRunner().invoke(
        cli, [*name.split()[1:], "--help"], prog_name="vclock", terminal_width=width
    )
    assert result.exit_code == 0, result.output
    return result.output


def test_the_walk_sees_every_command() -> None:
    assert {"vclock server", "vclock client", "vclock demo", "vclock export shiviz"} <= set(
        COMMANDS
    )


@pytest.mark.parametrize("width", [50, 80, 200])
@pytest.mark.parametrize("group", sorted(GROUPS))
def test_help_lists_every_command_with_its_whole_summary(group: str, width: int) -> None:
    text = help_text(group, width)
    listing = text.partition("\nCommands:\n")[2]
    assert "..." not in listing
    flat = " ".join(listing.split())
    for name, command in sorted(GROUPS[group].commands.items()):
        assert f"{name} {' '.join(summary(command).split())}" in flat, name


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_every_command_has_a_summary_that_ends_a_sentence(name: str) -> None:
    assert summary(COMMANDS[name]).endswith("."), name


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_every_option_of_every_command_has_help(name: str) -> None:
    command = COMMANDS[name]
    ctx = click.Context(command, info_name=name)
    options = [p for p in command.get_params(ctx) if isinstance(p, click.Option)]
    assert options  # at least --help
    missing = [option.opts for option in options if not (option.help or "").strip()]
    assert missing == [], f"{name}: options without help text"


def test_version_is_the_packages_version() -> None:
    result = CliRunner().invoke(cli, ["--version"], prog_name="vclock")
    assert result.output == f"vclock, version {vclock.__version__}\n"


# docs/cli.md


def documented_commands() -> dict[str, str]:
    """The rows ``| `vclock ...` | summary |`` of docs/cli.md's command table."""
    return {
        m[1]: m[2].strip()
        for m in re.finditer(r"^\| `(vclock [a-z -]+)` \| (.+) \|$", CLI_DOC, re.M)
    }


def test_cli_doc_lists_every_command_with_the_summary_help_shows() -> None:
    leaves = {name: summary(cmd) for name, cmd in COMMANDS.items() if name not in GROUPS}
    assert documented_commands() == leaves


def completion(env: dict[str, str]) -> str:
    result = CliRunner().invoke(cli, [], prog_name="vclock", env=env)
    assert result.exit_code == 0, result.output
    return result.output


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_the_documented_completion_scripts_exist(shell: str) -> None:
    assert f"_VCLOCK_COMPLETE={shell}_source vclock" in CLI_DOC
    script = completion({"_VCLOCK_COMPLETE": f"{shell}_source"})
    assert "_VCLOCK_COMPLETE" in script and "vclock" in script


def test_bash_completion_completes_commands_and_options() -> None:
    def complete(words: str) -> list[str]:
        cword = str(len(words.split()) - (0 if words.endswith(" ") else 1))
        env = {"_VCLOCK_COMPLETE": "bash_complete", "COMP_WORDS": words, "COMP_CWORD": cword}
        return completion(env).split()

    assert "plain,export" in complete("vclock ex")
    assert "plain,--sync-interval" in complete("vclock server --sync")
    assert "plain,shiviz" in complete("vclock export ")


def test_main_is_the_command() -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0


def test_cli_doc_explains_every_peers_mode_of_the_client() -> None:
    option = next(p for p in COMMANDS["vclock client"].params if p.name == "peers_mode")
    assert isinstance(option.type, click.Choice)
    section = CLI_DOC.partition("`vclock client --peers`")[2].partition("\n## ")[0]
    rows = re.findall(r"^\| `([a-z]+)`(?: \(default\))? \|", section, re.M)
    assert rows == list(option.type.choices)
