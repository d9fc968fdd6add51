"""Entry point of the ``dockyard`` command.

Each command group lives in its own module with a ``register(subparsers)``
function that adds its commands; a command's handler has the signature
``handler(args, context) -> int`` and imports the engine lazily, so that
``dockyard --help`` and every command start fast.

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
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from dockyard.config import Config
    from dockyard.engine import Engine

# Modules under dockyard.cli that register commands, in the order of `dockyard --help`.
COMMAND_MODULES = ("container", "container_tools", "image", "volume")


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


class Parser(argparse.ArgumentParser):
    """An argument parser with the docker CLI's exit codes for usage errors.

    docker exits with 125 for a flag it cannot parse (an unknown flag, or a
    value the flag rejects) and with 1 for a missing argument or an unknown
    command.
    """

    def error(self, message: str) -> None:  # type: ignore[override]
        self.print_usage(sys.stderr)
        missing = message.startswith("the following arguments are required") or "invalid choice" in message
        self.exit(1 if missing else 125, f"{self.prog}: {message}\nSee '{self.prog} --help'.\n")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="dockyard", description="A Docker-compatible container engine.")
    parser.add_argument("--root", type=Path, help="state directory (default /var/lib/dockyard, or $DOCKYARD_ROOT)")
    parser.add_argument("-D", "--debug", action="store_true", help="show debug logs and tracebacks")
    parser.add_argument("-v", "--version", action="store_true", help="print the version and exit")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    for name in COMMAND_MODULES:
        module = importlib.import_module(f"dockyard.cli.{name}")
        module.register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
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
        print(f"Error: {error}", file=sys.stderr)
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
