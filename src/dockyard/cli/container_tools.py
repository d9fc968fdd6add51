"""Container tools: exec, top, stats, cp, diff, commit and export.

Each command is registered at the top level (``dockyard exec``) and in the
``container`` group (``dockyard container exec``), as Docker does. Exit codes
follow Docker: 1 when the engine reports an error, and for ``exec`` the exit
code of the process (126 when it cannot be started, 127 when its program is
not found).
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
from typing import TYPE_CHECKING, Any, Callable

if TYPE_CHECKING:
    from dockyard.cli.main import Context
    from dockyard.engine.execs import ExecSession

ENGINE_ERROR_EXIT = 1
CHUNK_SIZE = 65536


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the commands at the top level and to the ``container`` group, creating the group if needed."""
    _add_commands(subparsers)
    group = subparsers.choices.get("container")
    if group is None:
        group = subparsers.add_parser("container", help="Manage containers", description="Manage containers")
        group.set_defaults(handler=lambda args, context: group.print_help() or 0)
    commands = _group_subparsers(group)
    if commands is None:
        commands = group.add_subparsers(dest="container_command", metavar="COMMAND", parser_class=type(group))
    _add_commands(commands)


def _group_subparsers(group: argparse.ArgumentParser) -> argparse._SubParsersAction | None:
    for action in group._actions:
        if isinstance(action, argparse._SubParsersAction):
            return action
    return None


def _add_commands(commands: argparse._SubParsersAction) -> None:
    add_exec(commands)


def _command(subparsers: argparse._SubParsersAction, name: str, handler: Callable, help_text: str,
             usage: str | None = None) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(name, help=help_text, description=help_text, usage=usage)
    parser.set_defaults(handler=handler, error_exit_code=ENGINE_ERROR_EXIT)
    return parser


# -- exec ---------------------------------------------------------------------------------


def add_exec(subparsers: argparse._SubParsersAction) -> None:
    parser = _command(subparsers, "exec", exec_command, "Execute a command in a running container",
                      usage="dockyard exec [OPTIONS] CONTAINER COMMAND [ARG...]")
    parser.add_argument("-d", "--detach", action="store_true", help="run the command in the background")
    parser.add_argument("--detach-keys", help="key sequence for detaching (accepted for compatibility; unused)")
    parser.add_argument("-e", "--env", action="append", default=[], metavar="NAME[=VALUE]",
                        help="set an environment variable (NAME alone takes its value from this environment)")
    parser.add_argument("--env-file", action="append", default=[], metavar="FILE",
                        help="read environment variables from a file of NAME=VALUE lines")
    parser.add_argument("-i", "--interactive", action="store_true", help="keep stdin open and send it to the command")
    parser.add_argument("--privileged", action="store_true", help="give the command every capability")
    parser.add_argument("-t", "--tty", action="store_true", help="give the command a pseudo-terminal")
    parser.add_argument("-u", "--user", help="user as name|uid[:group|gid], looked up in the container")
    parser.add_argument("-w", "--workdir", help="working directory inside the container")
    parser.add_argument("container", metavar="CONTAINER")
    parser.add_argument("command", nargs=argparse.REMAINDER, metavar="COMMAND")


def build_exec_config(args: argparse.Namespace, environ: dict[str, str] | None = None) -> dict[str, Any]:
    """Turn the exec flags into the Engine API's ``ExecConfig``."""
    from dockyard.cli import container_flags
    from dockyard.errors import InvalidArgument

    environ = dict(os.environ) if environ is None else environ
    if not args.command:
        raise InvalidArgument('"dockyard exec" requires at least 2 arguments: CONTAINER COMMAND [ARG...]')
    env: list[str] = []
    for path in args.env_file:
        env += container_flags.read_key_value_file(path, "--env-file", environ)
    for entry in args.env:
        value = container_flags.parse_env(entry, environ)
        if value is not None:
            env.append(value)
    config: dict[str, Any] = {
        "AttachStdin": bool(args.interactive and not args.detach),
        "AttachStdout": not args.detach,
        "AttachStderr": not args.detach,
        "Tty": bool(args.tty),
        "Cmd": list(args.command),
        "Env": env,
        "Privileged": bool(args.privileged),
    }
    if args.user:
        config["User"] = args.user
    if args.workdir:
        config["WorkingDir"] = args.workdir
    if args.detach_keys:
        config["DetachKeys"] = args.detach_keys
    return config


def exec_command(args: argparse.Namespace, context: "Context") -> int:
    from dockyard.cli import container_io
    from dockyard.engine.execs import ExecService
    from dockyard.errors import ExecFailed, InvalidArgument

    config = build_exec_config(args)
    if args.tty and args.interactive and not args.detach and not sys.stdin.isatty():
        raise InvalidArgument("the input device is not a TTY: drop -t, or run from a terminal")
    service = ExecService(context.engine)
    exec_id = service.create(args.container, config)
    size = None
    if args.tty:
        size = container_io.terminal_size(sys.stdout.fileno()) or container_io.terminal_size(sys.stdin.fileno())
    try:
        session = service.start(exec_id, detach=args.detach, console_size=size)
    except ExecFailed as error:
        print(error, file=sys.stderr)
        return error.exit_code
    if session is None:
        return 0
    try:
        if args.tty:
            relay_terminal(session, interactive=args.interactive)
        else:
            relay_pipes(session)
    finally:
        session.close()
    return session.wait()


def relay_pipes(session: "ExecSession") -> None:
    """Copy our stdin to the process and its stdout and stderr to ours, until both outputs end."""
    import selectors

    sys.stdout.flush()
    sys.stderr.flush()
    if session.stdin is not None:
        _start_stdin_copy(sys.stdin.fileno(), session.stdin, session.close_stdin)
    targets = {session.stdout: sys.stdout.fileno(), session.stderr: sys.stderr.fileno()}
    selector = selectors.DefaultSelector()
    for fd in targets:
        selector.register(fd, selectors.EVENT_READ)
    try:
        while selector.get_map():
            for key, _ in selector.select():
                data = os.read(key.fd, CHUNK_SIZE)
                if not data:
                    selector.unregister(key.fd)
                    continue
                _write_all(targets[key.fd], data)
    finally:
        selector.close()


def relay_terminal(session: "ExecSession", interactive: bool) -> None:
    """Relay between our terminal (raw while relaying) and the process's terminal, following size changes."""
    import contextlib
    import errno
    import selectors

    from dockyard.cli import container_io

    assert session.terminal is not None
    master = session.terminal
    local = sys.stdout.fileno() if sys.stdout.isatty() else (sys.stdin.fileno() if sys.stdin.isatty() else None)

    def resize() -> None:
        size = container_io.terminal_size(local) if local is not None else None
        if size is not None:
            session.resize(*size)

    raw = interactive and sys.stdin.isatty()
    proxy = container_io.SignalProxy(None, resize if local is not None else None)
    sys.stdout.flush()
    with proxy, (container_io.raw_terminal(sys.stdin.fileno()) if raw else contextlib.nullcontext()):
        resize()
        if interactive:
            _start_stdin_copy(sys.stdin.fileno(), master, None)
        selector = selectors.DefaultSelector()
        selector.register(master, selectors.EVENT_READ, "terminal")
        selector.register(proxy.pipe.read_fd, selectors.EVENT_READ, "wakeup")
        try:
            while True:
                for key, _ in selector.select():
                    if key.data == "wakeup":
                        with contextlib.suppress(BlockingIOError):
                            os.read(proxy.pipe.read_fd, 512)
                        proxy.handle()
                        continue
                    try:
                        data = os.read(master, CHUNK_SIZE)
                    except OSError as error:
                        # EIO: every descriptor of the terminal's other side is closed.
                        if error.errno == errno.EIO:
                            return
                        raise
                    if not data:
                        return
                    _write_all(sys.stdout.fileno(), data)
        finally:
            selector.close()


def _start_stdin_copy(source: int, target: int, at_end: Callable[[], None] | None) -> None:
    """Copy ``source`` to ``target`` in a daemon thread: stdin may be a file, which select cannot wait on."""

    def copy() -> None:
        try:
            while True:
                data = os.read(source, CHUNK_SIZE)
                if not data:
                    break
                _write_all(target, data)
        except OSError:
            pass  # the process exited and closed its side
        if at_end is not None:
            try:
                at_end()
            except OSError:
                pass

    threading.Thread(target=copy, daemon=True, name="stdin").start()


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]
