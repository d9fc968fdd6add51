"""The top-level parser: only the command that runs gets its full subparser, and help still lists every command."""

from __future__ import annotations

import argparse

import pytest

from dockyard.cli.main import UnbuiltParser, build_parser


def subcommands(parser: argparse.ArgumentParser) -> argparse._SubParsersAction:
    return next(action for action in parser._actions if isinstance(action, argparse._SubParsersAction))


def test_help_lists_every_command():
    assert build_parser(["--help"]).format_help() == build_parser().format_help()


def test_only_named_commands_are_built():
    commands = subcommands(build_parser(["images", "-q"]))
    assert not isinstance(commands.choices["images"], UnbuiltParser)
    assert isinstance(commands.choices["pull"], UnbuiltParser)
    assert isinstance(commands.choices["image"], UnbuiltParser)
    assert set(commands.choices) == set(subcommands(build_parser()).choices)


@pytest.mark.parametrize(
    "argv",
    [
        ["images", "-q"],
        ["image", "ls", "--digests"],
        ["history", "-H=false", "busybox"],
        ["--root", "/tmp/x", "pull", "-a", "busybox"],
        ["volume", "ls"],
        ["container", "ls", "-a"],
    ],
)
def test_selective_parse_matches_full_parse(argv):
    assert build_parser(argv).parse_args(argv) == build_parser().parse_args(argv)


def test_group_help_lists_its_commands():
    assert build_parser(["image", "--help"]).format_help() == build_parser().format_help()
    group = subcommands(build_parser(["image"])).choices["image"]
    full_group = subcommands(build_parser()).choices["image"]
    assert group.format_help() == full_group.format_help()


def test_unknown_command_lists_choices(capsys):
    with pytest.raises(SystemExit) as exited:
        build_parser(["bogus"]).parse_args(["bogus"])
    assert exited.value.code == 1
    assert "'images'" in capsys.readouterr().err


def test_unbuilt_parser_takes_registration_calls():
    unbuilt = UnbuiltParser()
    group = unbuilt.add_subparsers(dest="x")
    group.add_parser("y").add_argument("--z")
    assert list(unbuilt._actions) == []


def test_history_human_flag_values():
    parser = build_parser()
    assert parser.parse_args(["history", "img"]).human is True
    assert parser.parse_args(["history", "-H", "img"]).human is True
    for flag in ("-H=false", "--human=false", "-H=0", "--human=F", "--human=FALSE"):
        assert parser.parse_args(["history", flag, "img"]).human is False, flag
    assert parser.parse_args(["history", "--human=false", "--human=true", "img"]).human is True
    with_value = parser.parse_args(["history", "-H", "false"])
    assert (with_value.human, with_value.image) == (True, "false")


def test_abbreviated_flag_rejected(capsys):
    from dockyard.cli.main import main

    with pytest.raises(SystemExit) as exit_info:
        main(["run", "--priv", "busybox", "true"])
    assert exit_info.value.code == 125
    assert "--priv" in capsys.readouterr().err
