"""Volume commands: ``volume create``, ``ls``, ``inspect``, ``rm`` and ``prune``, with Docker's output.

Only the ``local`` driver exists; the engine rejects any other driver and
driver options it does not support.
"""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING, Callable

if TYPE_CHECKING:
    from dockyard.cli.main import Context

# Docker's CLI exits 1 when the engine reports an error for volume commands.
ENGINE_ERROR_EXIT = 1

VOLUME_HEADERS = {
    "Driver": "DRIVER",
    "Name": "VOLUME NAME",
    "Mountpoint": "MOUNTPOINT",
    "Scope": "SCOPE",
    "Labels": "LABELS",
    "CreatedAt": "CREATED AT",
}


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``volume`` group."""
    group = subparsers.add_parser("volume", help="Manage volumes", description="Manage volumes")

    def show_group_help(args: argparse.Namespace, context: "Context") -> int:
        group.print_help()
        return 0

    group.set_defaults(handler=show_group_help)
    commands = group.add_subparsers(dest="volume_command", metavar="COMMAND", parser_class=type(group))

    parser = _command(commands, "create", create, "Create a volume")
    parser.add_argument("name", nargs="?", metavar="VOLUME", help="volume name (default: a random 64-hex name)")
    parser.add_argument("-d", "--driver", default="local", help="volume driver; only local is supported")
    parser.add_argument("--label", action="append", default=[], metavar="KEY[=VALUE]", help="set a label on the volume")
    parser.add_argument("-o", "--opt", action="append", default=[], metavar="KEY=VALUE", help="driver option")

    parser = _command(commands, "ls", list_volumes, "List volumes", aliases=["list"])
    parser.add_argument("-q", "--quiet", action="store_true", help="print only volume names")
    parser.add_argument("-f", "--filter", action="append", default=[], metavar="KEY=VALUE",
                        help="filter output: name=, label=KEY[=VALUE], dangling=true|false, driver=")
    parser.add_argument("--format", help="'table', 'json', or a Go template such as '{{.Name}}'")

    parser = _command(commands, "inspect", inspect, "Show detailed information on one or more volumes")
    parser.add_argument("volumes", nargs="+", metavar="VOLUME")
    parser.add_argument("-f", "--format", help="'json' or a Go template such as '{{.Mountpoint}}'")

    parser = _command(commands, "rm", remove, "Remove one or more volumes", aliases=["remove"])
    parser.add_argument("volumes", nargs="+", metavar="VOLUME")
    parser.add_argument("-f", "--force", action="store_true", help="do not report volumes that do not exist")

    parser = _command(commands, "prune", prune, "Remove unused volumes")
    parser.add_argument("-a", "--all", action="store_true", help="remove all unused volumes, not just anonymous ones")
    parser.add_argument("-f", "--force", action="store_true", help="do not ask for confirmation")
    parser.add_argument("--filter", action="append", default=[], metavar="KEY=VALUE",
                        help="only prune volumes that match: label=KEY[=VALUE]")


def _command(subparsers: argparse._SubParsersAction, name: str, handler: Callable, help_text: str,
             aliases: list[str] | None = None) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(name, help=help_text, description=help_text, aliases=aliases or [])
    parser.set_defaults(handler=handler, error_exit_code=ENGINE_ERROR_EXIT)
    return parser


def _key_values(values: list[str], flag: str, require_value: bool) -> dict[str, str]:
    from dockyard.cli.container_flags import FlagError

    result: dict[str, str] = {}
    for value in values:
        key, equals, argument = value.partition("=")
        if not key or (require_value and not equals):
            raise FlagError(flag, value, "use KEY=VALUE")
        result[key] = argument
    return result


def create(args: argparse.Namespace, context: "Context") -> int:
    labels = _key_values(args.label, "--label", require_value=False)
    options = _key_values(args.opt, "-o, --opt", require_value=True)
    volume = context.engine.volumes.create(args.name, driver=args.driver, labels=labels, options=options)
    print(volume["Name"])
    return 0


def list_volumes(args: argparse.Namespace, context: "Context") -> int:
    from dockyard.cli import render
    from dockyard.cli.image import parse_filters

    volumes = context.engine.volumes.list(filters=parse_filters(args.filter))
    if args.quiet:
        sys.stdout.write("".join(volume["Name"] + "\n" for volume in volumes))
        return 0
    rows = [{
        "Driver": volume["Driver"],
        "Name": volume["Name"],
        "Mountpoint": volume["Mountpoint"],
        "Scope": volume["Scope"],
        "Labels": ",".join(f"{key}={value}" for key, value in sorted((volume.get("Labels") or {}).items())),
        "CreatedAt": volume.get("CreatedAt") or "",
    } for volume in volumes]
    if args.format and args.format != "table":
        sys.stdout.write(render.render_format(args.format, rows, VOLUME_HEADERS))
        return 0
    table = [["DRIVER", "VOLUME NAME"]] + [[row["Driver"], row["Name"]] for row in rows]
    sys.stdout.write(render.format_table(table))
    return 0


def inspect(args: argparse.Namespace, context: "Context") -> int:
    from dockyard.cli.container import write_inspect
    from dockyard.errors import NotFound

    found = []
    missing = []
    for name in args.volumes:
        try:
            found.append(context.engine.volumes.inspect(name))
        except NotFound as error:
            missing.append(str(error))
    write_inspect(found, args.format)
    for message in missing:
        print(f"Error: {message}", file=sys.stderr)
    return ENGINE_ERROR_EXIT if missing else 0


def remove(args: argparse.Namespace, context: "Context") -> int:
    from dockyard.errors import DockyardError

    status = 0
    for name in args.volumes:
        try:
            context.engine.volumes.remove(name, force=args.force)
        except DockyardError as error:
            print(f"Error: {error}", file=sys.stderr, flush=True)
            status = ENGINE_ERROR_EXIT
            continue
        print(name, flush=True)
    return status


def prune(args: argparse.Namespace, context: "Context") -> int:
    from dockyard.cli import render
    from dockyard.cli.image import parse_filters

    filters = parse_filters(args.filter)
    if args.all:
        filters["all"] = ["true"]
    if not args.force:
        if args.all:
            warning = "WARNING! This will remove all local volumes not used by at least one container."
        else:
            warning = "WARNING! This will remove anonymous local volumes not used by at least one container."
        sys.stdout.write(f"{warning}\nAre you sure you want to continue? [y/N] ")
        sys.stdout.flush()
        if sys.stdin.readline().strip().lower() not in ("y", "yes"):
            return 0
    result = context.engine.volumes.prune(filters=filters)
    deleted = result.get("VolumesDeleted") or []
    if deleted:
        print("Deleted Volumes:")
        for name in deleted:
            print(name)
        print()
    print(f"Total reclaimed space: {render.human_size(result.get('SpaceReclaimed') or 0)}")
    return 0
