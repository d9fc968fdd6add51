"""Container commands: run, create, start, ps, logs, stop, kill, restart, rm, wait, attach, pause, unpause, rename.

Each command is registered at the top level (``dockyard ps``, ``dockyard rm``)
and in the ``container`` group (``dockyard container ls``, ``container rm``,
``container prune``, ``container inspect``), as Docker does. The flags of
``run`` and ``create``, and their conversion into the engine's create body,
live in ``container_flags``. The streaming of a foreground container's input
and output lives in ``container_io``.

Exit codes follow Docker. ``run`` and ``create`` exit 125 when they fail
before the container runs, and ``run`` exits with the container's own code
after it ran (126 when its command cannot be executed, 127 when it is not
found). A command that takes several containers (``stop a b``) reports each
failure on stderr, goes on with the others, and exits 1 if any failed.
"""

from __future__ import annotations

import argparse
import logging
import sys
from typing import TYPE_CHECKING, Any, Callable

from dockyard.cli import container_flags

if TYPE_CHECKING:
    from dockyard.cli.main import Context

log = logging.getLogger(__name__)

# Docker's CLI exits 1 when the engine reports an error for most commands; run and create use 125.
ENGINE_ERROR_EXIT = 1

CONTAINER_HEADERS = {
    "ID": "CONTAINER ID",
    "Image": "IMAGE",
    "Command": "COMMAND",
    "CreatedAt": "CREATED AT",
    "RunningFor": "CREATED",
    "Ports": "PORTS",
    "State": "STATE",
    "Status": "STATUS",
    "Size": "SIZE",
    "Names": "NAMES",
    "Labels": "LABELS",
    "Mounts": "MOUNTS",
    "Networks": "NETWORKS",
    "LocalVolumes": "LOCAL VOLUMES",
}

# Docker shortens the COMMAND column to this many characters, the last one an ellipsis.
COMMAND_WIDTH = 20


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the container commands to the top-level parser, and the ``container`` group."""
    _add_commands(subparsers, group=False)

    group = subparsers.add_parser("container", help="Manage containers", description="Manage containers")

    def show_group_help(args: argparse.Namespace, context: "Context") -> int:
        group.print_help()
        return 0

    group.set_defaults(handler=show_group_help)
    commands = group.add_subparsers(dest="container_command", metavar="COMMAND", parser_class=type(group))
    _add_commands(commands, group=True)
    add_prune(commands, "prune")
    add_inspect(commands, "inspect")


def _add_commands(commands: argparse._SubParsersAction, group: bool) -> None:
    add_run(commands, "run")
    add_create(commands, "create")
    add_start(commands, "start")
    if group:
        add_list(commands, "ls", aliases=["list", "ps"])
    else:
        add_list(commands, "ps")
    add_logs(commands, "logs")
    add_stop(commands, "stop")
    add_kill(commands, "kill")
    add_restart(commands, "restart")
    add_remove(commands, "rm", aliases=["remove"] if group else [])
    add_wait(commands, "wait")
    add_attach(commands, "attach")
    add_pause(commands, "pause")
    add_unpause(commands, "unpause")
    add_rename(commands, "rename")


def _command(subparsers: argparse._SubParsersAction, name: str, handler: Callable, help_text: str,
             aliases: list[str] | None = None, exit_code: int | None = ENGINE_ERROR_EXIT,
             add_help: bool = True) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(name, help=help_text, description=help_text, aliases=aliases or [],
                                   add_help=add_help)
    parser.set_defaults(handler=handler, error_exit_code=exit_code)
    return parser


def _for_each(names: list[str], action: Callable[[str], object], print_name: bool = True) -> int:
    """Apply ``action`` to every container, print each name that succeeded, report each failure; return the exit code."""
    from dockyard.errors import DockyardError

    status = 0
    for name in names:
        try:
            action(name)
        except DockyardError as error:
            print(f"Error: {error}", file=sys.stderr, flush=True)
            status = ENGINE_ERROR_EXIT
            continue
        if print_name:
            print(name, flush=True)
    return status


# -- run and create ----------------------------------------------------------------------


def add_run(subparsers: argparse._SubParsersAction, name: str) -> None:
    # -h is --hostname, as in Docker, so the parser's own help is only --help.
    parser = _command(subparsers, name, run, "Create and run a new container from an image",
                      exit_code=None, add_help=False)
    container_flags.add_create_flags(parser, run=True)


def add_create(subparsers: argparse._SubParsersAction, name: str) -> None:
    parser = _command(subparsers, name, create, "Create a new container", exit_code=None, add_help=False)
    container_flags.add_create_flags(parser, run=False)


def create_container(context: "Context", request: container_flags.CreateRequest) -> str:
    """Create the container and return its full ID, pulling the image first as the ``--pull`` policy requests."""
    from dockyard.errors import ImageNotFound

    containers = context.engine.containers
    image = request.body["Image"]
    if request.pull == "always":
        _pull(context, image, request.platform)
        return containers.create(request.body, name=request.name)
    try:
        return containers.create(request.body, name=request.name)
    except ImageNotFound:
        if request.pull == "never":
            raise
    from dockyard.image import reference as references

    shown = references.parse(image).familiar() if not references.looks_like_image_id(image) else image
    print(f"Unable to find image '{shown}' locally", file=sys.stderr, flush=True)
    _pull(context, image, request.platform)
    return containers.create(request.body, name=request.name)


def _pull(context: "Context", image: str, platform: str | None) -> None:
    from dockyard.cli import render

    # Docker's run and create show the pull on stderr, keeping stdout for the container ID.
    with render.progress_printer(sys.stderr) as progress:
        context.engine.images.pull(image, platform=platform, progress=progress)


def _request(args: argparse.Namespace) -> container_flags.CreateRequest:
    """Build the create body; with ``-t`` on a terminal, the container's terminal starts at the caller's size."""
    from dockyard.cli import container_io

    request = container_flags.build_create_request(args)
    check_cidfile(args.cidfile)
    size = container_io.terminal_size(sys.stdout.fileno()) if args.tty and sys.stdout.isatty() else None
    # A terminal that never had its size set reports 0 x 0, which the Docker CLI does not send either.
    if size is not None and all(size):
        request.body["HostConfig"]["ConsoleSize"] = list(size)
    return request


def run(args: argparse.Namespace, context: "Context") -> int:
    from dockyard.errors import InvalidArgument

    request = _request(args)
    detach_keys = container_flags.detach_sequence(args.detach_keys)
    if args.tty and args.interactive and not args.detach and not sys.stdin.isatty():
        raise InvalidArgument("the input device is not a TTY: drop -t, or run from a terminal")
    context.engine.containers.prepare_monitor()
    container_id = create_container(context, request)
    write_cidfile(args.cidfile, container_id)
    containers = context.engine.containers
    if args.detach:
        containers.start(container_id)
        print(container_id)
        return 0
    return stream_container(
        context, container_id,
        tty=args.tty, stdin=args.interactive, sig_proxy=args.sig_proxy == "true",
        start=True, auto_remove=args.rm, detach_keys=detach_keys,
    )


def create(args: argparse.Namespace, context: "Context") -> int:
    request = _request(args)
    container_id = create_container(context, request)
    write_cidfile(args.cidfile, container_id)
    print(container_id)
    return 0


def check_cidfile(path: str | None) -> None:
    """Reject a ``--cidfile`` that exists already, before the container is created, as Docker does."""
    import os

    from dockyard.errors import InvalidArgument

    if path and os.path.exists(path):
        raise InvalidArgument(f"container ID file found, make sure the other container isn't running or delete {path}")


def write_cidfile(path: str | None, container_id: str) -> None:
    from dockyard.errors import InvalidArgument

    if not path:
        return
    try:
        with open(path, "x") as file:
            file.write(container_id)
    except OSError as error:
        raise InvalidArgument(f"failed to write the container ID to {path}: {error.strerror or error}") from error


def stream_container(context: "Context", container_id: str, *, tty: bool, stdin: bool, sig_proxy: bool,
                     start: bool, auto_remove: bool, detach_keys: bytes | None = None) -> int:
    """Attach to a container (starting it if asked), stream until its output ends, and return its exit code.

    Signals are forwarded only without a TTY, as in Docker: with a TTY,
    Ctrl-C reaches the container as a byte through the raw terminal. With a
    TTY and stdin, typing the ``detach_keys`` sequence leaves the container
    running and returns 0.
    """
    import contextlib

    from dockyard.cli import container_io
    from dockyard.errors import DockyardError

    containers = context.engine.containers
    attachment = containers.attach(container_id, stdin=stdin, stdout=True, stderr=True)
    stdin_stream, stdout_stream, stderr_stream = container_io.binary_stdio()
    raw = tty and stdin and sys.stdin.isatty()
    # The terminal whose size the container's PTY follows: our stdout's, else our stdin's.
    terminal_fd: int | None = None
    if sys.stdout.isatty():
        terminal_fd = sys.stdout.fileno()
    elif raw:
        terminal_fd = sys.stdin.fileno()

    def resize() -> None:
        size = container_io.terminal_size(terminal_fd) if terminal_fd is not None else None
        if size is None or not all(size):
            return
        try:
            attachment.resize(*size)
        except DockyardError as error:
            # The container may have exited already; the Docker CLI also ignores a failed resize.
            log.debug("resizing the terminal of container %s failed: %s", container_id, error)

    def forward(signal_name: str) -> None:
        containers.kill(container_id, signal_name)

    proxy = container_io.SignalProxy(
        forward if sig_proxy and not tty else None,
        resize if tty and terminal_fd is not None else None,
    )
    # An auto-removed container's exit code is gone with it, so the wait
    # begins before the start, as in the Docker CLI.
    waiter = ExitWaiter(context, container_id, "removed" if auto_remove else "next-exit")
    waiter.start()
    try:
        with proxy, (container_io.raw_terminal(sys.stdin.fileno()) if raw else contextlib.nullcontext()):
            if start:
                try:
                    containers.start(container_id)
                except BaseException:
                    if auto_remove:
                        _remove_quietly(context, container_id)
                    raise
            if proxy.resize is not None:
                resize()
            detached = container_io.pump(
                attachment, tty=tty,
                stdin=stdin_stream if stdin else None,
                stdout=stdout_stream, stderr=stderr_stream,
                on_wakeup=proxy.handle, wakeup_fd=proxy.pipe.read_fd,
                detach_keys=detach_keys if tty and stdin else None,
            )
    finally:
        attachment.close()
    if detached:
        log.debug("detached from container %s, which keeps running", container_id)
        return 0
    return waiter.exit_code()


class ExitWaiter:
    """A thread that waits for a container to reach a wait condition and keeps the result."""

    def __init__(self, context: "Context", container_id: str, condition: str) -> None:
        import threading

        self.containers = context.engine.containers
        self.container_id = container_id
        self.condition = condition
        self.result: dict | None = None
        self.error: BaseException | None = None
        self._running = threading.Event()
        self._thread = threading.Thread(target=self._wait, daemon=True, name="wait")

    def start(self) -> None:
        self._thread.start()
        self._running.wait()

    def _wait(self) -> None:
        self._running.set()
        try:
            self.result = self.containers.wait(self.container_id, condition=self.condition)
        except BaseException as error:  # noqa: BLE001 - re-raised in the main thread by exit_code()
            self.error = error

    def exit_code(self) -> int:
        """Return the container's exit code once the condition is met; print the exit error, if any."""
        self._thread.join()
        if self.error is not None:
            raise self.error
        result = self.result or {}
        error = result.get("Error")
        message = error.get("Message") if isinstance(error, dict) else error
        if message:
            print(f"Error: {message}", file=sys.stderr)
        return int(result.get("StatusCode") or 0)


def _remove_quietly(context: "Context", container_id: str) -> None:
    from dockyard.errors import NotFound

    try:
        context.engine.containers.remove(container_id, force=True)
    except NotFound:
        pass


# -- start and attach -------------------------------------------------------------------------


def add_start(subparsers: argparse._SubParsersAction, name: str) -> None:
    parser = _command(subparsers, name, start, "Start one or more stopped containers")
    parser.add_argument("containers", nargs="+", metavar="CONTAINER")
    parser.add_argument("-a", "--attach", action="store_true", help="attach stdout and stderr and forward signals")
    parser.add_argument("-i", "--interactive", action="store_true", help="attach the container's stdin")
    container_flags.add_detach_keys_flag(parser)


def start(args: argparse.Namespace, context: "Context") -> int:
    from dockyard.errors import InvalidArgument

    containers = context.engine.containers
    if not (args.attach or args.interactive):
        return _for_each(args.containers, containers.start)
    if len(args.containers) > 1:
        raise InvalidArgument("you cannot start and attach multiple containers at once")
    info = containers.inspect(args.containers[0])
    config = info.get("Config") or {}
    host_config = info.get("HostConfig") or {}
    return stream_container(
        context, info["Id"],
        tty=bool(config.get("Tty")), stdin=args.interactive and bool(config.get("OpenStdin")),
        sig_proxy=True, start=True, auto_remove=bool(host_config.get("AutoRemove")),
        detach_keys=container_flags.detach_sequence(args.detach_keys),
    )


def add_attach(subparsers: argparse._SubParsersAction, name: str) -> None:
    parser = _command(subparsers, name, attach, "Attach this terminal's input and output to a running container")
    parser.add_argument("container", metavar="CONTAINER")
    parser.add_argument("--no-stdin", action="store_true", help="do not attach stdin")
    parser.add_argument("--sig-proxy", default="true", choices=["true", "false"],
                        help="forward signals this command receives to the container (default true)")
    container_flags.add_detach_keys_flag(parser)


def attach(args: argparse.Namespace, context: "Context") -> int:
    from dockyard.errors import Conflict

    info = context.engine.containers.inspect(args.container)
    state = info.get("State") or {}
    if not state.get("Running"):
        raise Conflict("You cannot attach to a stopped container, start it first")
    if state.get("Paused"):
        raise Conflict("You cannot attach to a paused container, unpause it first")
    config = info.get("Config") or {}
    host_config = info.get("HostConfig") or {}
    return stream_container(
        context, info["Id"],
        tty=bool(config.get("Tty")), stdin=not args.no_stdin and bool(config.get("OpenStdin")),
        sig_proxy=args.sig_proxy == "true", start=False, auto_remove=bool(host_config.get("AutoRemove")),
        detach_keys=container_flags.detach_sequence(args.detach_keys),
    )


# -- ps -------------------------------------------------------------------------------------------


def add_list(subparsers: argparse._SubParsersAction, name: str, aliases: list[str] | None = None) -> None:
    parser = _command(subparsers, name, list_containers, "List containers", aliases)
    parser.add_argument("-a", "--all", action="store_true", help="show all containers (default shows just running)")
    parser.add_argument("-q", "--quiet", action="store_true", help="print only container IDs")
    parser.add_argument("-l", "--latest", action="store_true", help="show the latest created container, in any state")
    parser.add_argument("-n", "--last", type=int, default=-1, metavar="N",
                        help="show the N last created containers, in any state")
    parser.add_argument("--no-trunc", action="store_true", help="do not truncate output")
    parser.add_argument("-s", "--size", action="store_true", help="show the size of each container's writable layer")
    parser.add_argument("-f", "--filter", action="append", default=[], metavar="KEY=VALUE",
                        help="filter output: status=, name=, id=, label=KEY[=VALUE], ancestor=IMAGE, exited=CODE")
    parser.add_argument("--format", help="'table', 'json', or a Go template such as '{{.ID}} {{.Names}}'")


def go_quote(text: str) -> str:
    """Quote a string as Go's ``strconv.Quote`` does for printable text: double quotes and backslash escapes."""
    escapes = {'"': '\\"', "\\": "\\\\", "\a": "\\a", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r",
               "\t": "\\t", "\v": "\\v"}
    parts = []
    for character in text:
        if character in escapes:
            parts.append(escapes[character])
        elif not character.isprintable():
            code = ord(character)
            if code < 0x80:
                parts.append(f"\\x{code:02x}")
            elif code < 0x10000:
                parts.append(f"\\u{code:04x}")
            else:
                parts.append(f"\\U{code:08x}")
        else:
            parts.append(character)
    return '"' + "".join(parts) + '"'


def ellipsis(text: str, width: int) -> str:
    """Shorten ``text`` to ``width`` characters, ending in "…" when cut, as Docker's tables do."""
    if len(text) <= width:
        return text
    return text[:width - 1] + "…"


def format_ports(ports: list[dict] | None) -> str:
    """Render a summary's ``Ports`` as Docker's PORTS column: ``0.0.0.0:8600->8080/tcp, 9000/udp``."""
    published = []
    exposed = []
    for port in sorted(ports or [], key=lambda p: (p.get("Type", ""), p.get("PrivatePort", 0), p.get("IP", ""))):
        private = f"{port.get('PrivatePort')}/{port.get('Type', 'tcp')}"
        address = port.get("IP")
        if address and port.get("PublicPort"):
            host = f"[{address}]" if ":" in address else address
            published.append(f"{host}:{port['PublicPort']}->{private}")
        else:
            exposed.append(private)
    return ", ".join(published + exposed)


def container_rows(summaries: list[dict], no_trunc: bool, now: float | None = None) -> list[dict]:
    """Turn ``ContainerSummary`` dicts into rows of the strings ``ps`` shows, keyed by Docker's field names."""
    from dockyard.cli import render

    rows = []
    for summary in summaries:
        command = summary.get("Command") or ""
        if not no_trunc:
            command = ellipsis(command, COMMAND_WIDTH)
        names = [name[1:] if name.startswith("/") else name for name in summary.get("Names") or []]
        # Names with a further slash are legacy links, which Docker hides unless --no-trunc.
        if not no_trunc:
            names = [name for name in names if "/" not in name]
        image = summary.get("Image") or ""
        if not no_trunc and image.startswith("sha256:"):
            image = render.short_id(image)
        created = summary.get("Created") or None
        labels = summary.get("Labels") or {}
        mounts = summary.get("Mounts") or []
        size = ""
        if "SizeRw" in summary or "SizeRootFs" in summary:
            size = render.human_size(summary.get("SizeRw") or 0)
            if summary.get("SizeRootFs"):
                size += f" (virtual {render.human_size(summary['SizeRootFs'])})"
        networks = ((summary.get("NetworkSettings") or {}).get("Networks") or {}).keys()
        rows.append({
            "ID": render.short_id(summary["Id"], no_trunc) if not no_trunc else summary["Id"],
            "Image": image,
            "Command": go_quote(command),
            "CreatedAt": render.local_time(created),
            "RunningFor": render.time_ago(created, now),
            "Ports": format_ports(summary.get("Ports")),
            "State": summary.get("State") or "",
            "Status": summary.get("Status") or "",
            "Size": size,
            "Names": ",".join(names),
            "Labels": ",".join(f"{key}={value}" for key, value in sorted(labels.items())),
            "Mounts": ",".join(_mount_name(mount, no_trunc) for mount in mounts),
            "Networks": ",".join(sorted(networks)),
            "LocalVolumes": str(sum(1 for mount in mounts if mount.get("Driver") == "local")),
        })
    return rows


def _mount_name(mount: dict, no_trunc: bool) -> str:
    name = mount.get("Name") or mount.get("Source") or ""
    if not no_trunc and len(name) > 15:
        return ellipsis(name, 15)
    return name


def list_containers(args: argparse.Namespace, context: "Context") -> int:
    from dockyard.cli import render
    from dockyard.cli.image import parse_filters

    filters = parse_filters(args.filter)
    limit = None
    if args.latest:
        limit = 1
    elif args.last > 0:
        limit = args.last
    # -n and -l show containers in any state, as in Docker.
    show_all = args.all or limit is not None
    containers = context.engine.containers
    summaries = containers.list(all=show_all, filters=filters, limit=limit, size=args.size)
    rows = container_rows(summaries, args.no_trunc)

    if args.quiet:
        sys.stdout.write("".join(row["ID"] + "\n" for row in rows))
        return 0
    if args.format and args.format != "table":
        sys.stdout.write(render.render_format(args.format, rows, CONTAINER_HEADERS))
        return 0
    columns = ["ID", "Image", "Command", "RunningFor", "Status", "Ports", "Names"]
    if args.size:
        columns.append("Size")
    table = [[CONTAINER_HEADERS[column] for column in columns]]
    table += [[row[column] for column in columns] for row in rows]
    sys.stdout.write(render.format_table(table))
    return 0


# -- logs ---------------------------------------------------------------------------------------------


def add_logs(subparsers: argparse._SubParsersAction, name: str) -> None:
    parser = _command(subparsers, name, logs, "Fetch the logs of a container")
    parser.add_argument("container", metavar="CONTAINER")
    parser.add_argument("-f", "--follow", action="store_true", help="follow the output until the container stops")
    parser.add_argument("-n", "--tail", default="all", help="number of lines to show from the end (default all)")
    parser.add_argument("--since", help="show logs since a time: RFC 3339, Unix seconds, or a duration such as 10m")
    parser.add_argument("--until", help="show logs before a time: RFC 3339, Unix seconds, or a duration such as 10m")
    parser.add_argument("-t", "--timestamps", action="store_true", help="show the time of each line")
    parser.add_argument("--details", action="store_true", help="show extra details (log labels; none are recorded)")


def parse_tail(text: str) -> int | None:
    from dockyard.errors import InvalidArgument

    if text in ("all", ""):
        return None
    try:
        tail = int(text)
    except ValueError:
        raise container_flags.FlagError("-n, --tail", text, "use a number of lines or all") from None
    if tail < 0:
        return None
    if tail > 1 << 62:
        raise InvalidArgument(f"--tail {text} is out of range")
    return tail


def format_log_time(value: Any) -> str:
    """Format a log entry's time as RFC 3339 with nanoseconds in UTC, as ``logs -t`` shows it."""
    from datetime import datetime, timezone

    if isinstance(value, str):
        return value
    seconds = int(value)
    nanoseconds = int(round((float(value) - seconds) * 1e9))
    if nanoseconds >= 1_000_000_000:
        seconds, nanoseconds = seconds + 1, nanoseconds - 1_000_000_000
    moment = datetime.fromtimestamp(seconds, timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%S") + f".{nanoseconds:09d}Z"


def logs(args: argparse.Namespace, context: "Context") -> int:
    import time

    now = time.time()
    since = container_flags.parse_log_time(args.since, now) if args.since else None
    until = container_flags.parse_log_time(args.until, now) if args.until else None
    tail = parse_tail(args.tail)
    stdout, stderr = sys.stdout.buffer, sys.stderr.buffer
    entries = context.engine.containers.logs(
        args.container, follow=args.follow, tail=tail, since=since, until=until,
    )
    for entry in entries:
        data = entry.data if isinstance(entry.data, bytes) else entry.data.encode()
        target = stderr if entry.stream == "stderr" else stdout
        if args.timestamps:
            data = format_log_time(entry.time).encode() + b" " + data
        target.write(data)
        if args.follow:
            target.flush()
    stdout.flush()
    stderr.flush()
    return 0


# -- stop, kill, restart, pause, unpause, rm, wait, rename ---------------------------------------


def add_stop(subparsers: argparse._SubParsersAction, name: str) -> None:
    parser = _command(subparsers, name, stop, "Stop one or more running containers")
    parser.add_argument("containers", nargs="+", metavar="CONTAINER")
    parser.add_argument("-t", "--timeout", "--time", type=int, dest="timeout",
                        help="seconds to wait before killing the container (default: its stop timeout, or 10)")
    parser.add_argument("-s", "--signal", help="signal to send (default: the container's stop signal, or SIGTERM)")


def stop(args: argparse.Namespace, context: "Context") -> int:
    containers = context.engine.containers
    return _for_each(args.containers, lambda name: containers.stop(name, timeout=args.timeout, signal=args.signal))


def add_kill(subparsers: argparse._SubParsersAction, name: str) -> None:
    parser = _command(subparsers, name, kill, "Kill one or more running containers")
    parser.add_argument("containers", nargs="+", metavar="CONTAINER")
    parser.add_argument("-s", "--signal", default="KILL", help="signal to send, by name or number (default KILL)")


def kill(args: argparse.Namespace, context: "Context") -> int:
    containers = context.engine.containers
    return _for_each(args.containers, lambda name: containers.kill(name, signal=args.signal))


def add_restart(subparsers: argparse._SubParsersAction, name: str) -> None:
    parser = _command(subparsers, name, restart, "Restart one or more containers")
    parser.add_argument("containers", nargs="+", metavar="CONTAINER")
    parser.add_argument("-t", "--timeout", "--time", type=int, dest="timeout",
                        help="seconds to wait for the stop before killing the container")
    parser.add_argument("-s", "--signal", help="signal that stops the container (not supported)")


def restart(args: argparse.Namespace, context: "Context") -> int:
    from dockyard.errors import InvalidArgument

    if args.signal:
        raise InvalidArgument("restart --signal is not supported: the container's stop signal is used")
    containers = context.engine.containers
    return _for_each(args.containers, lambda name: containers.restart(name, timeout=args.timeout))


def add_pause(subparsers: argparse._SubParsersAction, name: str) -> None:
    parser = _command(subparsers, name, pause, "Pause all processes within one or more containers")
    parser.add_argument("containers", nargs="+", metavar="CONTAINER")


def pause(args: argparse.Namespace, context: "Context") -> int:
    return _for_each(args.containers, context.engine.containers.pause)


def add_unpause(subparsers: argparse._SubParsersAction, name: str) -> None:
    parser = _command(subparsers, name, unpause, "Unpause all processes within one or more containers")
    parser.add_argument("containers", nargs="+", metavar="CONTAINER")


def unpause(args: argparse.Namespace, context: "Context") -> int:
    return _for_each(args.containers, context.engine.containers.unpause)


def add_remove(subparsers: argparse._SubParsersAction, name: str, aliases: list[str] | None = None) -> None:
    parser = _command(subparsers, name, remove, "Remove one or more containers", aliases)
    parser.add_argument("containers", nargs="+", metavar="CONTAINER")
    parser.add_argument("-f", "--force", action="store_true", help="kill and remove a running container")
    parser.add_argument("-v", "--volumes", action="store_true", help="remove the container's anonymous volumes too")
    parser.add_argument("-l", "--link", action="store_true", help="remove a link (links are not supported)")


def remove(args: argparse.Namespace, context: "Context") -> int:
    from dockyard.errors import InvalidArgument

    if args.link:
        raise InvalidArgument("rm --link is not supported: dockyard has no container links")
    containers = context.engine.containers
    return _for_each(args.containers, lambda name: containers.remove(name, force=args.force, volumes=args.volumes))


def add_wait(subparsers: argparse._SubParsersAction, name: str) -> None:
    parser = _command(subparsers, name, wait, "Block until one or more containers stop, then print their exit codes")
    parser.add_argument("containers", nargs="+", metavar="CONTAINER")


def wait(args: argparse.Namespace, context: "Context") -> int:
    containers = context.engine.containers

    def wait_one(name: str) -> None:
        result = containers.wait(name)
        print(result.get("StatusCode", 0), flush=True)

    return _for_each(args.containers, wait_one, print_name=False)


def add_rename(subparsers: argparse._SubParsersAction, name: str) -> None:
    parser = _command(subparsers, name, rename, "Rename a container")
    parser.add_argument("container", metavar="CONTAINER")
    parser.add_argument("new_name", metavar="NEW_NAME")


def rename(args: argparse.Namespace, context: "Context") -> int:
    context.engine.containers.rename(args.container, args.new_name)
    return 0


# -- container prune and container inspect ------------------------------------------------------


def add_prune(subparsers: argparse._SubParsersAction, name: str) -> None:
    parser = _command(subparsers, name, prune, "Remove all stopped containers")
    parser.add_argument("-f", "--force", action="store_true", help="do not ask for confirmation")
    parser.add_argument("--filter", action="append", default=[], metavar="KEY=VALUE",
                        help="only prune containers that match: until=TIME, label=KEY[=VALUE], label!=KEY[=VALUE]")


def prune(args: argparse.Namespace, context: "Context") -> int:
    from dockyard.cli import render
    from dockyard.cli.image import parse_filters

    filters = parse_filters(args.filter)
    if not args.force:
        sys.stdout.write("WARNING! This will remove all stopped containers.\nAre you sure you want to continue? [y/N] ")
        sys.stdout.flush()
        answer = sys.stdin.readline().strip().lower()
        if answer not in ("y", "yes"):
            return 0
    result = context.engine.containers.prune(filters=filters or None)
    deleted = result.get("ContainersDeleted") or []
    if deleted:
        print("Deleted Containers:")
        for container_id in deleted:
            print(container_id)
        print()
    print(f"Total reclaimed space: {render.human_size(result.get('SpaceReclaimed') or 0)}")
    return 0


def add_inspect(subparsers: argparse._SubParsersAction, name: str) -> None:
    parser = _command(subparsers, name, inspect, "Show detailed information on one or more containers")
    parser.add_argument("containers", nargs="+", metavar="CONTAINER")
    parser.add_argument("-f", "--format", help="'json' or a Go template such as '{{.State.Status}}'")
    parser.add_argument("-s", "--size", action="store_true", help="add SizeRw and SizeRootFs, the sizes in bytes")


def inspect(args: argparse.Namespace, context: "Context") -> int:
    from dockyard.errors import NotFound

    found: list[dict] = []
    missing: list[str] = []
    for name in args.containers:
        try:
            found.append(context.engine.containers.inspect(name, size=args.size))
        except NotFound as error:
            missing.append(str(error))
    write_inspect(found, args.format)
    for message in missing:
        print(f"Error: {message}", file=sys.stderr)
    return ENGINE_ERROR_EXIT if missing else 0


def write_inspect(found: list[dict], format_text: str | None) -> None:
    """Print inspect results as Docker does: a JSON array by default, or one template line per object."""
    import json

    from dockyard.cli import render

    if format_text and format_text != "json":
        template = render.Template(format_text.replace("\\t", "\t").replace("\\n", "\n"))
        sys.stdout.write("".join(template.render(item) + "\n" for item in found))
    else:
        sys.stdout.write(json.dumps(found, indent=4, ensure_ascii=False) + "\n")
