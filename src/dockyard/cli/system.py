"""System commands: ``system service`` (the Docker Engine API server), ``version`` and ``info``."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from dockyard.cli.main import Context

DEFAULT_HOST = "unix:///run/dockyard/dockyard.sock"
# Seconds without a request after which the service exits, as Podman's default for `system service`.
DEFAULT_IDLE_SECONDS = 5.0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``system`` group and the top-level ``version`` and ``info`` commands."""
    group = subparsers.add_parser("system", help="Manage dockyard", description="Manage dockyard")

    def show_group_help(args: argparse.Namespace, context: "Context") -> int:
        group.print_help()
        return 0

    group.set_defaults(handler=show_group_help)
    commands = group.add_subparsers(dest="system_command", metavar="COMMAND", parser_class=type(group))

    parser = commands.add_parser("service", help="Serve the Docker Engine API on a socket",
                                 description="Serve the Docker Engine API (versions 1.40 to 1.50) on a unix socket "
                                             "or a loopback TCP port, until stopped or idle.")
    parser.add_argument("--host", "-H", action="append", metavar="URL",
                        help=f"where to listen: unix:///PATH or tcp://127.0.0.1:PORT, repeatable (default {DEFAULT_HOST})")
    parser.add_argument("--time", "-t", type=float, default=DEFAULT_IDLE_SECONDS, metavar="SECONDS",
                        help=f"exit after this many seconds without a request; 0 never exits (default {DEFAULT_IDLE_SECONDS:g})")
    parser.add_argument("--log-level", default="info", choices=("debug", "info", "warning", "error"),
                        help="level of the log on stderr: one access line per request at info (default info)")
    parser.set_defaults(handler=service)

    info_parser = commands.add_parser("info", help="Display system-wide information")
    info_parser.add_argument("-f", "--format", help="'json' or a Go template such as '{{.NCPU}}'")
    info_parser.set_defaults(handler=info)

    for name, handler, help_text in (("version", version, "Show the dockyard version information"),
                                     ("info", info, "Display system-wide information")):
        parser = subparsers.add_parser(name, help=help_text, description=help_text)
        parser.add_argument("-f", "--format", help="'json' or a Go template")
        parser.set_defaults(handler=handler)


def service(args: argparse.Namespace, context: "Context") -> int:
    import logging

    from dockyard.api.server import serve

    if args.time < 0:
        from dockyard.errors import InvalidArgument

        raise InvalidArgument(f"invalid --time {args.time:g}: use 0 (never exit) or a number of seconds")
    level = logging.DEBUG if context.debug else getattr(logging, args.log_level.upper())
    logging.getLogger().setLevel(level)
    for handler in logging.getLogger().handlers:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    serve(context.engine, args.host or [DEFAULT_HOST], idle_timeout=args.time)
    return 0


def _print(value: dict[str, Any], format_text: str | None, fallback: str) -> None:
    if format_text:
        from dockyard.cli import render

        sys.stdout.write(render.render_format(format_text, [value]))
        return
    sys.stdout.write(fallback)


def version(args: argparse.Namespace, context: "Context") -> int:
    from dockyard.engine import system

    result = system.version(context.engine)
    text = (
        "Engine:\n"
        f" Version:          {result['Version']}\n"
        f" API version:      {result['ApiVersion']} (minimum version {result['MinAPIVersion']})\n"
        f" OS/Arch:          {result['Os']}/{result['Arch']}\n"
        f" Kernel version:   {result['KernelVersion']}\n"
    )
    _print(result, args.format, text)
    return 0


def info(args: argparse.Namespace, context: "Context") -> int:
    from dockyard.cli import render
    from dockyard.engine import system

    result = system.info(context.engine)
    lines = [
        f"Containers: {result['Containers']}",
        f" Running: {result['ContainersRunning']}",
        f" Paused: {result['ContainersPaused']}",
        f" Stopped: {result['ContainersStopped']}",
        f"Images: {result['Images']}",
        f"Server Version: {result['ServerVersion']}",
        f"Storage Driver: {result['Driver']}",
        f"Logging Driver: {result['LoggingDriver']}",
        f"Cgroup Driver: {result['CgroupDriver']}",
        f"Cgroup Version: {result['CgroupVersion']}",
        f"Runtimes: {' '.join(result['Runtimes'])}",
        f"Default Runtime: {result['DefaultRuntime']}",
        f"Kernel Version: {result['KernelVersion']}",
        f"Operating System: {result['OperatingSystem']}",
        f"OSType: {result['OSType']}",
        f"Architecture: {result['Architecture']}",
        f"CPUs: {result['NCPU']}",
        f"Total Memory: {render.human_size(result['MemTotal'])}",
        f"Name: {result['Name']}",
        f"Docker Root Dir: {result['DockerRootDir']}",
    ]
    mirrors = result["RegistryConfig"]["Mirrors"]
    if mirrors:
        lines.append("Registry Mirrors:")
        lines += [f" {mirror}" for mirror in mirrors]
    _print(result, args.format, "".join(line + "\n" for line in lines))
    return 0
