"""Container tools: exec, top, stats, cp, diff, commit, export and update.

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
# docker's exit code for a flag value it cannot parse.
FLAG_ERROR_EXIT = 125
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
    add_top(commands)
    add_stats(commands)
    add_cp(commands)
    add_diff(commands)
    add_commit(commands)
    add_export(commands)
    add_update(commands)


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
    parser.add_argument("--detach-keys", help="key sequence for detaching (not supported: rejected when given)")
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
        raise InvalidArgument("--detach-keys is not supported by dockyard exec")
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
    assert session.stdout is not None and session.stderr is not None
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
    # The terminal whose size the process's terminal follows: our stdout's, else our stdin's.
    local: int | None = None
    if sys.stdout.isatty():
        local = sys.stdout.fileno()
    elif sys.stdin.isatty():
        local = sys.stdin.fileno()

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


# -- top and stats ----------------------------------------------------------------------------


def add_top(subparsers: argparse._SubParsersAction) -> None:
    parser = _command(subparsers, "top", top, "Display the running processes of a container",
                      usage="dockyard top CONTAINER [ps OPTIONS]")
    parser.add_argument("container", metavar="CONTAINER")
    parser.add_argument("ps_args", nargs=argparse.REMAINDER, metavar="ps OPTIONS")


def top(args: argparse.Namespace, context: "Context") -> int:
    from dockyard.cli import render
    from dockyard.engine.stats import StatsService

    result = StatsService(context.engine).top(args.container, " ".join(args.ps_args) or None)
    sys.stdout.write(render.format_table([result["Titles"], *result["Processes"]]))
    return 0


STATS_HEADERS = {
    "Container": "CONTAINER",
    "ID": "CONTAINER ID",
    "Name": "NAME",
    "CPUPerc": "CPU %",
    "MemUsage": "MEM USAGE / LIMIT",
    "MemPerc": "MEM %",
    "NetIO": "NET I/O",
    "BlockIO": "BLOCK I/O",
    "PIDs": "PIDS",
}
DEFAULT_STATS_FORMAT = "table {{.ID}}\t{{.Name}}\t{{.CPUPerc}}\t{{.MemUsage}}\t{{.MemPerc}}\t{{.NetIO}}\t{{.BlockIO}}\t{{.PIDs}}"
BINARY_UNITS = ("B", "KiB", "MiB", "GiB", "TiB", "PiB")


def binary_size(size: float) -> str:
    """Format bytes in binary units with four significant digits, as ``docker stats`` shows memory ("1.5MiB")."""
    value = float(size)
    unit = 0
    while value >= 1024 and unit < len(BINARY_UNITS) - 1:
        value /= 1024
        unit += 1
    return f"{value:.4g}{BINARY_UNITS[unit]}"


def add_stats(subparsers: argparse._SubParsersAction) -> None:
    parser = _command(subparsers, "stats", stats, "Display a live stream of container resource usage statistics",
                      usage="dockyard stats [OPTIONS] [CONTAINER...]")
    parser.add_argument("-a", "--all", action="store_true", help="show all containers (default shows just running)")
    parser.add_argument("--format", help="format the output with a Go template, or 'table', 'json'")
    parser.add_argument("--no-stream", action="store_true", help="print one sample and exit")
    parser.add_argument("--no-trunc", action="store_true", help="do not truncate the container IDs")
    parser.add_argument("containers", nargs="*", metavar="CONTAINER")


def stats_row(stats: dict[str, Any], container: str, no_trunc: bool) -> dict[str, str]:
    """Return the ``docker stats`` columns of one sample, keyed as the ``--format`` fields."""
    from dockyard.cli import render
    from dockyard.engine.stats import summary

    numbers = summary(stats)
    received, sent = numbers["network"]
    read, written = numbers["block_io"]
    return {
        "Container": container,
        "ID": stats["id"] if no_trunc else stats["id"][:12],
        "Name": str(stats.get("name", "")).lstrip("/"),
        "CPUPerc": f"{numbers['cpu_percent']:.2f}%",
        "MemUsage": f"{binary_size(numbers['memory_usage'])} / {binary_size(numbers['memory_limit'])}",
        "MemPerc": f"{numbers['memory_percent']:.2f}%",
        "NetIO": f"{render.human_size(received)} / {render.human_size(sent)}",
        "BlockIO": f"{render.human_size(read)} / {render.human_size(written)}",
        "PIDs": str(numbers["pids"]),
    }


def stats(args: argparse.Namespace, context: "Context") -> int:
    import time

    from dockyard.cli import render
    from dockyard.engine.stats import SAMPLE_INTERVAL, StatsService
    from dockyard.errors import Conflict

    service = StatsService(context.engine)
    names = list(args.containers)
    if not names:
        names = [summary["Id"] for summary in context.engine.containers.list(all=args.all)]
    format_text = args.format or DEFAULT_STATS_FORMAT
    if format_text == "table":
        format_text = DEFAULT_STATS_FORMAT
    previous: dict[str, dict] = {}
    clear = not args.no_stream and sys.stdout.isatty()
    first_round = True
    while True:
        rows = []
        for name in names:
            try:
                sample = service.sample(name)
            except Conflict:
                # A stopped container: an error when named without --all, else left out.
                if args.containers and not args.all:
                    raise
                continue
            if name in previous:
                sample["precpu_stats"] = previous[name].get("cpu_stats") or {}
            previous[name] = sample
            rows.append((name, sample))
        if first_round:
            # CPU % is a difference between two samples, so the first round only records.
            first_round = False
            time.sleep(SAMPLE_INTERVAL)
            continue
        output = render.render_format(format_text, [stats_row(sample, name, args.no_trunc) for name, sample in rows],
                                      STATS_HEADERS)
        if clear:
            sys.stdout.write("\x1b[2J\x1b[H")
        sys.stdout.write(output)
        sys.stdout.flush()
        if args.no_stream:
            return 0
        time.sleep(SAMPLE_INTERVAL)


# -- cp ----------------------------------------------------------------------------------------


def add_cp(subparsers: argparse._SubParsersAction) -> None:
    parser = _command(subparsers, "cp", cp, "Copy files/folders between a container and the local filesystem",
                      usage="dockyard cp [OPTIONS] CONTAINER:SRC_PATH DEST_PATH|-\n"
                            "       dockyard cp [OPTIONS] SRC_PATH|- CONTAINER:DEST_PATH")
    parser.add_argument("-a", "--archive", action="store_true", help="keep the files' uid and gid")
    parser.add_argument("-L", "--follow-link", action="store_true", help="follow a symlink given as SRC_PATH")
    parser.add_argument("-q", "--quiet", action="store_true",
                        help="print no summary line; it is printed only when stderr is a terminal anyway")
    parser.add_argument("source", metavar="SRC_PATH")
    parser.add_argument("dest", metavar="DEST_PATH")


def split_container_path(text: str) -> tuple[str | None, str]:
    """Split ``CONTAINER:PATH`` into its parts; a local path (``-``, ``./a:b``, ``/a:b``) has no container."""
    if text == "-" or text.startswith(("/", ".")):
        return None, text
    container, colon, path = text.partition(":")
    if not colon:
        return None, text
    return container, path


def cp(args: argparse.Namespace, context: "Context") -> int:
    from dockyard.engine.filesystem import FilesystemService
    from dockyard.errors import InvalidArgument

    source_container, source = split_container_path(args.source)
    dest_container, dest = split_container_path(args.dest)
    if (source_container is None) == (dest_container is None):
        if source_container is not None:
            raise InvalidArgument("copying between containers is not supported")
        raise InvalidArgument("must specify at least one container source")
    service = FilesystemService(context.engine)
    if source_container is not None:
        if not source:
            raise InvalidArgument(f"invalid container path {args.source!r}: the path is empty")
        if dest == "-":
            sys.stdout.flush()
            service.archive(source_container, source, sys.stdout.buffer, follow_link=args.follow_link)
            sys.stdout.buffer.flush()
            return 0
        size = service.copy_from(source_container, source, dest, follow_link=args.follow_link, keep_owner=args.archive)
        if not args.quiet and sys.stderr.isatty():
            print(copied_message(size, dest), file=sys.stderr)
        return 0
    assert dest_container is not None
    if source == "-":
        service.put_archive(dest_container, dest or "/", sys.stdin.buffer, keep_owner=args.archive)
        return 0
    size = service.copy_to(dest_container, source, dest or "/", follow_link=args.follow_link, keep_owner=args.archive)
    if not args.quiet and sys.stderr.isatty():
        print(copied_message(size, f"{dest_container}:{dest}"), file=sys.stderr)
    return 0


DECIMAL_UNITS = ("B", "kB", "MB", "GB", "TB", "PB", "EB", "ZB", "YB")


def decimal_size(size: float, digits: int = 3) -> str:
    """Format bytes in decimal units with ``digits`` significant digits, as Docker's go-units does ("2.05kB")."""
    value = float(size)
    unit = 0
    while value >= 1000 and unit < len(DECIMAL_UNITS) - 1:
        value /= 1000
        unit += 1
    return f"{value:.{digits}g}{DECIMAL_UNITS[unit]}"


def copied_message(size: int, destination: str) -> str:
    """Return the line ``docker cp`` prints on a terminal after a copy; ``size`` is the tar stream's, in bytes."""
    return f"Successfully copied {decimal_size(size)} to {destination}"


# -- diff, commit and export -------------------------------------------------------------------


def add_diff(subparsers: argparse._SubParsersAction) -> None:
    parser = _command(subparsers, "diff", diff, "Inspect changes to files or directories on a container's filesystem")
    parser.add_argument("container", metavar="CONTAINER")


def diff(args: argparse.Namespace, context: "Context") -> int:
    from dockyard.engine.filesystem import KIND_LETTERS, FilesystemService

    for item in FilesystemService(context.engine).diff(args.container):
        print(f"{KIND_LETTERS[item['Kind']]} {item['Path']}")
    return 0


def add_commit(subparsers: argparse._SubParsersAction) -> None:
    parser = _command(subparsers, "commit", commit, "Create a new image from a container's changes",
                      usage="dockyard commit [OPTIONS] CONTAINER [REPOSITORY[:TAG]]")
    parser.add_argument("-a", "--author", default="", help='author, such as "Jane Doe <jane@example.com>"')
    parser.add_argument("-c", "--change", action="append", default=[],
                        help="apply a Dockerfile instruction (CMD, ENTRYPOINT, ENV, EXPOSE, LABEL, ONBUILD, "
                             "STOPSIGNAL, USER, VOLUME, WORKDIR) to the image")
    parser.add_argument("-m", "--message", default="", help="commit message")
    parser.add_argument("-p", "--pause", default="true", choices=("true", "false"),
                        help="pause the container during the commit (default true)")
    parser.add_argument("container", metavar="CONTAINER")
    parser.add_argument("repository", nargs="?", metavar="REPOSITORY[:TAG]")


def commit(args: argparse.Namespace, context: "Context") -> int:
    from dockyard.engine.filesystem import FilesystemService

    image_id = FilesystemService(context.engine).commit(
        args.container, args.repository, changes_text=args.change, comment=args.message, author=args.author,
        pause=args.pause == "true",
    )
    print(image_id)
    return 0


def add_export(subparsers: argparse._SubParsersAction) -> None:
    parser = _command(subparsers, "export", export, "Export a container's filesystem as a tar archive")
    parser.add_argument("-o", "--output", help="write to a file instead of stdout")
    parser.add_argument("container", metavar="CONTAINER")


def export(args: argparse.Namespace, context: "Context") -> int:
    from dockyard.engine.filesystem import FilesystemService
    from dockyard.errors import InvalidArgument

    service = FilesystemService(context.engine)
    if args.output:
        temporary = f"{args.output}.{os.getpid()}.tmp"
        try:
            with open(temporary, "wb") as out:
                service.export(args.container, out)
            os.replace(temporary, args.output)
        except BaseException:
            if os.path.exists(temporary):
                os.unlink(temporary)
            raise
        return 0
    if sys.stdout.isatty():
        raise InvalidArgument("refusing to write a tar archive to a terminal: use -o FILE or redirect stdout")
    sys.stdout.flush()
    service.export(args.container, sys.stdout.buffer)
    sys.stdout.buffer.flush()
    return 0


# -- update --------------------------------------------------------------------------------


def add_update(subparsers: argparse._SubParsersAction) -> None:
    parser = _command(subparsers, "update", update, "Update the resource limits and restart policy of containers",
                      usage="dockyard update [OPTIONS] CONTAINER [CONTAINER...]")
    parser.add_argument("--blkio-weight", help="relative block I/O weight, from 10 to 1000")
    parser.add_argument("--cpu-period", help="CFS scheduler period in microseconds")
    parser.add_argument("--cpu-quota", help="CFS scheduler quota in microseconds per period; -1 for no limit")
    parser.add_argument("-c", "--cpu-shares", help="relative CPU weight")
    parser.add_argument("--cpus", help="number of CPUs, such as 1.5")
    parser.add_argument("--cpuset-cpus", help="CPUs the container may run on, such as 0-3 or 0,1")
    parser.add_argument("--cpuset-mems", help="memory nodes the container may use, such as 0-1")
    parser.add_argument("-m", "--memory", help="memory limit, with a unit b, k, m or g (binary: 1k = 1024 bytes)")
    parser.add_argument("--memory-reservation", help="memory soft limit, with a unit")
    parser.add_argument("--memory-swap", help="memory plus swap limit, with a unit; -1 for unlimited swap")
    parser.add_argument("--pids-limit", help="maximum number of processes; -1 for unlimited")
    parser.add_argument("--restart", help="restart policy: no, on-failure[:max-retries], always or unless-stopped")
    parser.add_argument("containers", nargs="+", metavar="CONTAINER")


def build_update_body(args: argparse.Namespace) -> dict[str, Any]:
    """Convert ``update`` flags into a ``POST /containers/{id}/update`` body; raises FlagError for an invalid value.

    Only the flags on the command line appear in the body, so every other setting stays as it is.
    """
    from dockyard.cli import container_flags as flags
    from dockyard.errors import InvalidArgument

    conversions = (
        ("blkio_weight", "--blkio-weight", "BlkioWeight", flags.parse_int),
        ("cpu_period", "--cpu-period", "CpuPeriod", flags.parse_int),
        ("cpu_quota", "--cpu-quota", "CpuQuota", flags.parse_int),
        ("cpu_shares", "-c, --cpu-shares", "CpuShares", flags.parse_int),
        ("cpus", "--cpus", "NanoCpus", flags.parse_nano_cpus),
        ("cpuset_cpus", "--cpuset-cpus", "CpusetCpus", flags.parse_cpu_set),
        ("cpuset_mems", "--cpuset-mems", "CpusetMems", flags.parse_cpu_set),
        ("memory", "-m, --memory", "Memory", flags.parse_memory_size),
        ("memory_reservation", "--memory-reservation", "MemoryReservation", flags.parse_memory_size),
        ("memory_swap", "--memory-swap", "MemorySwap", flags.parse_memory_swap),
        ("pids_limit", "--pids-limit", "PidsLimit", flags.parse_int),
        ("restart", "--restart", "RestartPolicy", flags.parse_restart_policy),
    )
    body: dict[str, Any] = {}
    flag_count = 0
    for attribute, flag, field, parse in conversions:
        value = getattr(args, attribute)
        if value is None:
            continue
        flag_count += 1
        try:
            body[field] = parse(value)
        except InvalidArgument as error:
            raise flags.FlagError(flag, value, str(error)) from None
    if not flag_count:
        raise InvalidArgument("you must provide one or more flags when using this command")
    if body.get("PidsLimit") == 0:
        # The docker CLI (28.2) sends no limit for --pids-limit 0, which leaves the limit as it is.
        del body["PidsLimit"]
    return body


def update(args: argparse.Namespace, context: "Context") -> int:
    """Update each container, printing its name as given, as docker does; warnings go to stderr."""
    from dockyard.cli.container_flags import FlagError
    from dockyard.errors import DockyardError

    try:
        body = build_update_body(args)
    except FlagError as error:
        print(f"Error: {error}", file=sys.stderr)
        return FLAG_ERROR_EXIT
    status = 0
    warnings: list[str] = []
    for name in args.containers:
        try:
            warnings += context.engine.containers.update(name, body)
        except DockyardError as error:
            print(f"Error: {error}", file=sys.stderr, flush=True)
            status = ENGINE_ERROR_EXIT
            continue
        print(name, flush=True)
    for warning in dict.fromkeys(warnings):
        print(f"WARNING: {warning}", file=sys.stderr)
    return status
