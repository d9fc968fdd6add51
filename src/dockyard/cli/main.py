"""Entry point of the ``dockyard`` command.

Each command group lives in its own module with a ``register(subparsers)``
function that adds its commands; a command's handler has the signature
``handler(args, context) -> int`` and imports the engine lazily, so that
``dockyard --help`` and every command start fast.

A run builds the full parser only for the command it runs: every module still
registers all its commands, but a subparser whose name is not among the
command line's words is only listed in the help (``SelectiveSubParsersAction``).
Building all of them, more than 60, took longer than the rest of the start-up.

This is the one place that turns a ``DockyardError`` into a message on stderr
and an exit code. Tracebacks are shown only with ``--debug``.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable

if TYPE_CHECKING:
    from dockyard.config import Config
    from dockyard.engine import Engine

# Modules under dockyard.cli that register commands, in the order of `dockyard --help`.
COMMAND_MODULES = ("container", "container_tools", "image", "build", "network", "volume", "system")


@dataclass
class Context:
    """What every command handler gets besides its parsed arguments."""

    root: Path | None
    debug: bool

    @cached_property
    def config(self) -> "Config":
        from dockyard import config

        return config.load(root=self.root)

    @cached_property
    def engine(self) -> "Engine":
        from dockyard.engine import Engine

        return Engine(self.config)


class UnbuiltParser:
    """Stands in for the parser of a command that this run does not use.

    Registration code calls it as it would call an ``ArgumentParser``:
    every attribute is a method that does nothing and returns this object,
    and iterating over it (``parser._actions``) gives nothing.
    """

    def __getattr__(self, name: str) -> "UnbuiltParser":
        return self

    def __call__(self, *args: Any, **kwargs: Any) -> "UnbuiltParser":
        return self

    def __iter__(self) -> Any:
        return iter(())


class SelectiveSubParsersAction(argparse._SubParsersAction):
    """A subparsers action that builds only the subparsers whose name is in ``command_words``.

    Every other command gets a help entry and an ``UnbuiltParser`` in
    ``choices``, so ``--help`` and the "invalid choice" message still list all
    commands. A command that runs always has its name among the command
    line's words, so its parser is built. ``command_words`` None builds all.
    """

    command_words: frozenset[str] | None = None

    def add_parser(self, name: str, **kwargs: Any) -> Any:  # type: ignore[override]
        names = [name, *kwargs.get("aliases", ())]
        if self.command_words is None or any(each in self.command_words for each in names):
            return super().add_parser(name, **kwargs)
        if "help" in kwargs:
            self._choices_actions.append(
                self._ChoicesPseudoAction(name, tuple(kwargs.get("aliases", ())), kwargs["help"])
            )
        unbuilt = UnbuiltParser()
        for each in names:
            self._name_parser_map[each] = unbuilt  # type: ignore[assignment]
        return unbuilt


class Parser(argparse.ArgumentParser):
    """An argument parser with the docker CLI's exit codes for usage errors.

    docker exits with 125 for a flag it cannot parse (an unknown flag, or a
    value the flag rejects) and with 1 for a missing argument or an unknown
    command.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        # docker accepts no abbreviated flags: `--priv` must be an error, not `--privileged`.
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)
        self.register("action", "parsers", SelectiveSubParsersAction)

    def error(self, message: str) -> None:  # type: ignore[override]
        self.print_usage(sys.stderr)
        missing = message.startswith("the following arguments are required") or "invalid choice" in message
        self.exit(1 if missing else 125, f"{self.prog}: {message}\nSee '{self.prog} --help'.\n")


def build_parser(argv: Iterable[str] | None = None) -> argparse.ArgumentParser:
    """Build the parser; given the command line ``argv``, build full subparsers only for the commands it names."""
    parser = Parser(prog="dockyard", description="A Docker-compatible container engine.")
    parser.add_argument("--root", type=Path, help="state directory (default /var/lib/dockyard, or $DOCKYARD_ROOT)")
    parser.add_argument("-D", "--debug", action="store_true", help="show debug logs and tracebacks")
    parser.add_argument("-v", "--version", action="store_true", help="print the version and exit")
    if argv is not None:
        # Over-selection is harmless: a word that is an option's value only builds one parser too many.
        SelectiveSubParsersAction.command_words = frozenset(word for word in argv if not word.startswith("-"))
    try:
        subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
        for name in COMMAND_MODULES:
            module = importlib.import_module(f"dockyard.cli.{name}")
            module.register(subparsers)
    finally:
        SelectiveSubParsersAction.command_words = None
    return parser


def main(argv: list[str] | None = None, parser: argparse.ArgumentParser | None = None) -> int:
    """Run one command line; ``parser`` is a full parser built in advance (the CLI server's)."""
    if argv is None:
        argv = sys.argv[1:]
    if parser is None:
        parser = build_parser(argv)
    args = parser.parse_args(argv)
    if args.version:
        from dockyard import __version__

        print(f"dockyard version {__version__}")
        return 0
    if not getattr(args, "handler", None):
        parser.print_help()
        return 0 if args.command is None else 125

    debug = args.debug or os.environ.get("DOCKYARD_DEBUG") == "1"
    logging.basicConfig(
        level=logging.DEBUG if debug else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    context = Context(root=args.root, debug=debug)

    from dockyard.errors import DockyardError

    try:
        return int(args.handler(args, context) or 0)
    except DockyardError as error:
        if debug:
            logging.exception("command failed")
        # An error with plain_message set is printed as it is, as docker prints a failed RUN step.
        prefix = "" if getattr(error, "plain_message", False) else "Error: "
        print(f"{prefix}{error}", file=sys.stderr)
        # A command may set Docker's exit code for engine errors; image commands use 1.
        return getattr(args, "error_exit_code", None) or error.exit_code
    except BrokenPipeError:
        # The reader of our output went away (`dockyard images | head`); that is not an error.
        sys.stderr.close()
        return 0
    except (OSError, EOFError) as error:
        # A file the user named cannot be opened or written, or standard input ended
        # at a prompt. The message already names the file.
        if debug:
            logging.exception("command failed")
        print(f"Error: {_describe_os_error(error)}", file=sys.stderr)
        return getattr(args, "error_exit_code", None) or 125
    except KeyboardInterrupt:
        return 130


def _describe_os_error(error: OSError | EOFError) -> str:
    if isinstance(error, EOFError):
        return "standard input ended before the input the command needs was read"
    if error.filename is not None:
        return f"{error.strerror or error}: {error.filename}"
    return str(error)
