"""``dockyard-runtime``: a runc-compatible command over ``dockyard.runtime.container``.

Supported: ``spec``, ``create``, ``start``, ``state``, ``kill``, ``delete``,
``run``, ``pause``, ``resume``, ``exec``, with runc's global ``--root``, ``--log``,
``--log-format`` and ``--debug``. Exit codes follow runc: 0 on success, 1 on
any error, and for ``run`` and ``exec`` in the foreground the process's exit code.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

DEFAULT_ROOT = "/run/dockyard/runtime"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dockyard-runtime", description="Run OCI bundles, like runc.")
    parser.add_argument("--root", default=DEFAULT_ROOT, help=f"directory for container state (default {DEFAULT_ROOT})")
    parser.add_argument("--log", help="write logs to this file instead of stderr")
    parser.add_argument("--log-format", choices=("text", "json"), default="text", help="format of --log output")
    parser.add_argument("--debug", action="store_true", help="log every system action")
    parser.add_argument("--systemd-cgroup", action="store_true", help=argparse.SUPPRESS)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    spec = commands.add_parser("spec", help="write a default config.json into the bundle directory")
    spec.add_argument("-b", "--bundle", default=".", help="bundle directory (default: current directory)")

    for name, help_text in (("create", "set up a container, ready to start"), ("run", "create and start a container")):
        command = commands.add_parser(name, help=help_text)
        command.add_argument("-b", "--bundle", default=".", help="bundle directory (default: current directory)")
        command.add_argument("--pid-file", help="write the init's PID to this file")
        command.add_argument("--console-socket", help="unix socket that receives the terminal's master fd")
        command.add_argument("--no-pivot", action="store_true", help=argparse.SUPPRESS)
        command.add_argument("--no-new-keyring", action="store_true", help=argparse.SUPPRESS)
        if name == "run":
            command.add_argument("-d", "--detach", action="store_true", help="return after start without waiting")
        command.add_argument("id")

    for name, help_text in (
        ("start", "start a created container"),
        ("state", "print a container's OCI state as JSON"),
        ("pause", "freeze every process of a container"),
        ("resume", "thaw a paused container"),
    ):
        commands.add_parser(name, help=help_text).add_argument("id")

    kill = commands.add_parser("kill", help="send a signal to a container's init (default SIGTERM)")
    kill.add_argument("-a", "--all", action="store_true", help="signal every process in the container's cgroup")
    kill.add_argument("id")
    kill.add_argument("signal", nargs="?", default="SIGTERM")

    execute = commands.add_parser("exec", help="run a new process inside a running container")
    execute.add_argument("-p", "--process", help="JSON file with the OCI process object to run (replaces ARGS)")
    execute.add_argument("-t", "--tty", action="store_true", help="give the process a pseudo-terminal")
    execute.add_argument("--console-socket", help="unix socket that receives the terminal's master fd (with --tty)")
    execute.add_argument("-d", "--detach", action="store_true", help="return once the process is started")
    execute.add_argument("--pid-file", help="write the process's host PID to this file")
    execute.add_argument("-e", "--env", action="append", default=[], help="set an environment variable NAME=value")
    execute.add_argument("--cwd", help="working directory inside the container (default: the container's)")
    execute.add_argument("-u", "--user", help="user as name|uid[:group|gid], resolved in the container")
    execute.add_argument("-c", "--cap", action="append", default=[], help="add a capability, such as CAP_NET_ADMIN")
    execute.add_argument("--no-new-privs", action="store_true", help="set no_new_privs for the process")
    execute.add_argument("id")
    execute.add_argument("args", nargs=argparse.REMAINDER, help="command and arguments")

    delete = commands.add_parser("delete", help="remove a stopped container")
    delete.add_argument("-f", "--force", action="store_true", help="kill the container first if it is running")
    delete.add_argument("id")
    return parser


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return json.dumps({"level": record.levelname.lower(), "msg": record.getMessage(), "logger": record.name})


def _configure_logging(args: argparse.Namespace) -> None:
    handler: logging.Handler = logging.FileHandler(args.log) if args.log else logging.StreamHandler(sys.stderr)
    if args.log_format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=logging.DEBUG if args.debug else logging.WARNING, handlers=[handler])


def _exec(args: argparse.Namespace, root: Path) -> int:
    import socket

    from dockyard.errors import InvalidArgument
    from dockyard.runtime import container, spec
    from dockyard.runtime import exec as exec_module

    state = container.load(args.id, root)
    config = spec.load(Path(state.bundle))
    if args.process:
        process = json.loads(Path(args.process).read_text())
        process.setdefault("terminal", args.tty)
    else:
        if not args.args:
            raise InvalidArgument("exec needs a command, or a process file with --process")
        process = exec_module.build_process(
            config,
            args.args,
            env=args.env,
            cwd=args.cwd,
            terminal=args.tty,
            no_new_privileges=True if args.no_new_privs else None,
            additional_capabilities=args.cap,
        )
    console = None
    if process.get("terminal"):
        if not args.console_socket:
            raise InvalidArgument("--tty needs --console-socket, which receives the terminal's master fd")
        console = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        console.connect(args.console_socket)
    try:
        return exec_module.run(
            args.id, process, root, user=args.user, detach=args.detach, console=console, pid_file=args.pid_file
        )
    finally:
        if console is not None:
            console.close()


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _configure_logging(args)

    from dockyard.errors import Conflict, DockyardError, ExecFailed
    from dockyard.runtime import container
    from dockyard.runtime import spec as spec_module

    root = Path(args.root)
    try:
        if args.command == "spec":
            path = Path(args.bundle) / "config.json"
            if path.exists():
                raise Conflict(f"{path} already exists; remove it first")
            path.write_text(json.dumps(spec_module.default_spec(), indent=2) + "\n")
        elif args.command == "create":
            container.create(
                args.id, args.bundle, root, console_socket=args.console_socket, pid_file=args.pid_file
            )
        elif args.command == "run":
            return container.run(
                args.id,
                args.bundle,
                root,
                detach=args.detach,
                console_socket=args.console_socket,
                pid_file=args.pid_file,
            )
        elif args.command == "start":
            container.start(args.id, root)
        elif args.command == "state":
            print(json.dumps(container.oci_state(args.id, root), indent=2))
        elif args.command == "kill":
            container.kill(args.id, args.signal, root, all=args.all)
        elif args.command == "delete":
            container.delete(args.id, root, force=args.force)
        elif args.command == "exec":
            return _exec(args, root)
        elif args.command == "pause":
            container.pause(args.id, root)
        elif args.command == "resume":
            container.resume(args.id, root)
    except DockyardError as error:
        logging.getLogger("dockyard.runtime").debug("command failed", exc_info=True)
        print(f"dockyard-runtime: {error}", file=sys.stderr)
        # A process that could not start in exec gets Docker's 126 or 127; every other failure is 1, as in runc.
        return error.exit_code if isinstance(error, ExecFailed) else 1
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
