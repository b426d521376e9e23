"""Every `certfed` subcommand answers a bad argument with one line naming it, exit status 2.

The command tree is walked as cli/main.py builds it, so a subcommand added later is covered
without being listed here: for each, every argument with a type or a list of choices gets a
value it cannot accept, and the command gets a flag it does not know. Parsing stops at the
first bad argument, before any command runs, so nothing here needs a node.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from cli.main import build_parser, main

BAD = "not-valid-@@"
UNKNOWN_FLAG = "--no-such-flag"
# Values that one of the argument types accepts, tried in order for a placeholder.
SAMPLES = ("1", "2026-01-31", "2026-01", "370202", "x")


@dataclass(frozen=True)
class Command:
    path: tuple[str, ...]
    parsers: tuple[argparse.ArgumentParser, ...]

    @property
    def leaf(self) -> argparse.ArgumentParser:
        return self.parsers[-1]

    def __str__(self) -> str:
        return " ".join(self.path)


def _subparsers(parser: argparse.ArgumentParser) -> argparse._SubParsersAction | None:  # type: ignore[type-arg]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return action
    return None


def commands(
    parser: argparse.ArgumentParser,
    path: tuple[str, ...] = (),
    parsers: tuple[argparse.ArgumentParser, ...] = (),
) -> Iterator[Command]:
    """Every runnable command of the tree: the parsers from the root to each leaf."""
    parsers = (*parsers, parser)
    sub = _subparsers(parser)
    if sub is None:
        yield Command(path, parsers)
        return
    for name, child in sub.choices.items():
        yield from commands(child, (*path, name), parsers)


TREE = build_parser()
COMMANDS = list(commands(TREE))


def _accepts_anything(action: argparse.Action) -> bool:
    if action.choices is not None:
        return False
    if action.type is None:
        return True
    try:
        action.type(BAD)  # type: ignore[misc,operator]
    except (argparse.ArgumentTypeError, ValueError, TypeError):
        return False
    return True


def _sample(action: argparse.Action) -> str:
    if action.choices is not None:
        return str(next(iter(action.choices)))
    if action.type is None:
        return "x"
    for sample in SAMPLES:
        try:
            action.type(sample)  # type: ignore[misc,operator]
        except (argparse.ArgumentTypeError, ValueError, TypeError):
            continue
        return sample
    raise AssertionError(f"no sample value for {action.dest}: add one to SAMPLES")


def _is_positional(action: argparse.Action) -> bool:
    return not action.option_strings and not isinstance(action, argparse._SubParsersAction)


def _arguments(action: argparse.Action, value: str) -> list[str]:
    if not action.option_strings:
        return [value]
    if action.nargs == 0:
        return [action.option_strings[0]]
    return [action.option_strings[0], value]


def _valid_arguments(parser: argparse.ArgumentParser) -> list[str]:
    """What one parser needs to parse: its positionals, required options and required groups."""
    arguments: list[str] = []
    grouped = {
        id(action) for group in parser._mutually_exclusive_groups for action in group._group_actions
    }
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction | argparse._HelpAction):
            continue
        if _is_positional(action) or (action.required and id(action) not in grouped):
            arguments += _arguments(action, _sample(action))
    for group in parser._mutually_exclusive_groups:
        if group.required:
            chosen = group._group_actions[0]
            arguments += _arguments(chosen, _sample(chosen))
    return arguments


def _full_command(command: Command) -> list[str]:
    """The command with every argument it requires, at each level of the tree."""
    argv: list[str] = []
    for depth, parser in enumerate(command.parsers):
        argv += _valid_arguments(parser)
        if depth < len(command.path):
            argv.append(command.path[depth])
    return argv


def _one_line_error(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    capsys.readouterr()
    with pytest.raises(SystemExit) as exited:
        main(argv)
    captured = capsys.readouterr()
    assert exited.value.code == 2, (argv, captured.err)
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, (argv, captured.err)
    assert "Traceback" not in captured.err + captured.out
    return lines[0]


CASES = [
    pytest.param(command, action, id=f"{command} {action.option_strings or action.dest}")
    for command in COMMANDS
    for action in command.leaf._actions
    if not isinstance(action, argparse._SubParsersAction | argparse._HelpAction)
    and action.nargs != 0
    and not _accepts_anything(action)
]


def test_the_tree_is_walked() -> None:
    names = {str(command) for command in COMMANDS}
    for expected in ("desk status", "desk register", "roll import", "bench roll", "node cycle"):
        assert expected in names
    assert len(CASES) > 30


@pytest.mark.parametrize(("command", "action"), CASES)
def test_a_bad_value_is_one_line_naming_the_argument(
    command: Command, action: argparse.Action, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = list(command.path)
    if _is_positional(action):
        for earlier in command.leaf._actions:
            if earlier is action:
                break
            if _is_positional(earlier):
                argv.append(_sample(earlier))
    argv += _arguments(action, BAD)
    line = _one_line_error(argv, capsys)
    names = action.option_strings or [str(action.metavar or action.dest)]
    assert any(name in line for name in names), line
    if action.choices is not None:
        assert str(next(iter(action.choices))) in line, "the line lists what is accepted"
    assert "usage:" not in line


@pytest.mark.parametrize("command", COMMANDS, ids=str)
def test_an_unknown_flag_is_one_line_naming_it(
    command: Command, capsys: pytest.CaptureFixture[str]
) -> None:
    line = _one_line_error([*_full_command(command), UNKNOWN_FLAG], capsys)
    assert UNKNOWN_FLAG in line


@pytest.mark.parametrize(
    "command",
    [command for command in COMMANDS if len(command.path) > 1],
    ids=str,
)
def test_an_unknown_subcommand_is_one_line_listing_the_known_ones(
    command: Command, capsys: pytest.CaptureFixture[str]
) -> None:
    *parents, name = command.path
    line = _one_line_error([*parents, "no-such-command"], capsys)
    assert name in line


def test_the_examples_of_the_issue_say_what_is_accepted(
    capsys: pytest.CaptureFixture[str],
) -> None:
    line = _one_line_error(["desk", "walk-in", "--method", "selfie"], capsys)
    assert "--method" in line
    assert "on_site" in line
    assert "selfie" in line
    line = _one_line_error(
        ["desk", "status", "R1", "scheduled", "--scheduled-for", "tomorrow"], capsys
    )
    assert "--scheduled-for" in line
    assert "ISO 8601" in line
    line = _one_line_error(["bench", "roll", "--rows", "many"], capsys)
    assert "--rows" in line
    assert "whole number" in line
