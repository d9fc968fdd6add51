"""Network commands: ``network create/ls/inspect/rm/connect/disconnect/prune`` and ``port``, with Docker's output."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING, Any, Callable

if TYPE_CHECKING:
    from dockyard.cli.main import Context
    from dockyard.network.service import NetworkService

# Docker's CLI exits 1 when the engine reports an error for network commands.
ENGINE_ERROR_EXIT = 1

NETWORK_HEADERS = {
    "ID": "NETWORK ID",
    "Name": "NAME",
    "Driver": "DRIVER",
    "Scope": "SCOPE",
    "IPv4": "IPV4",
    "IPv6": "IPV6",
    "Internal": "INTERNAL",
    "Labels": "LABELS",
    "CreatedAt": "CREATED AT",
}


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``network`` group and the ``port`` command."""
    group = subparsers.add_parser("network", help="Manage networks", description="Manage networks")

    def show_group_help(args: argparse.Namespace, context: "Context") -> int:
        group.print_help()
        return 0

    group.set_defaults(handler=show_group_help)
    commands = group.add_subparsers(dest="network_command", metavar="COMMAND", parser_class=type(group))

    parser = _command(commands, "create", create, "Create a network")
    parser.add_argument("name", metavar="NETWORK")
    parser.add_argument("-d", "--driver", default="bridge", help="driver that manages the network; only bridge is supported")
    parser.add_argument("--subnet", help="IPv4 subnet in CIDR form (default: a free /16 or /20 from Docker's pools)")
    parser.add_argument("--gateway", help="IPv4 gateway of the subnet (default: its first address)")
    parser.add_argument("--internal", action="store_true", help="restrict external access: no NAT and no route out")
    parser.add_argument("--label", action="append", default=[], metavar="KEY[=VALUE]", help="set a label on the network")
    parser.add_argument("-o", "--opt", action="append", default=[], metavar="KEY=VALUE", help="driver option, stored only")

    parser = _command(commands, "ls", list_networks, "List networks", aliases=["list"])
    parser.add_argument("-q", "--quiet", action="store_true", help="print only network IDs")
    parser.add_argument("--no-trunc", action="store_true", help="do not truncate network IDs")
    parser.add_argument("-f", "--filter", action="append", default=[], metavar="KEY=VALUE",
                        help="filter output: name=, id=, driver=, label=KEY[=VALUE], type=builtin|custom")
    parser.add_argument("--format", help="'table', 'json', or a Go template such as '{{.Name}}'")

    parser = _command(commands, "inspect", inspect, "Display detailed information on one or more networks")
    parser.add_argument("networks", nargs="+", metavar="NETWORK")
    parser.add_argument("-f", "--format", help="'json' or a Go template such as '{{.Id}}'")

    parser = _command(commands, "rm", remove, "Remove one or more networks", aliases=["remove"])
    parser.add_argument("networks", nargs="+", metavar="NETWORK")
    parser.add_argument("-f", "--force", action="store_true", help="do not report networks that do not exist")

    parser = _command(commands, "connect", connect, "Connect a container to a network")
    parser.add_argument("network", metavar="NETWORK")
    parser.add_argument("container", metavar="CONTAINER")
    parser.add_argument("--alias", action="append", default=[], help="add a network-scoped alias for the container")
    parser.add_argument("--ip", help="IPv4 address of the container on this network")

    parser = _command(commands, "disconnect", disconnect, "Disconnect a container from a network")
    parser.add_argument("network", metavar="NETWORK")
    parser.add_argument("container", metavar="CONTAINER")
    parser.add_argument("-f", "--force", action="store_true", help="do not fail when the container is not connected")

    parser = _command(commands, "prune", prune, "Remove all unused networks")
    parser.add_argument("-f", "--force", action="store_true", help="do not ask for confirmation")

    parser = subparsers.add_parser("port", help="List port mappings or a specific mapping for the container",
                                   description="List port mappings or a specific mapping for the container")
    parser.set_defaults(handler=port, error_exit_code=ENGINE_ERROR_EXIT)
    parser.add_argument("container", metavar="CONTAINER")
    parser.add_argument("private_port", nargs="?", metavar="PRIVATE_PORT[/PROTO]")


def _command(subparsers: argparse._SubParsersAction, name: str, handler: Callable, help_text: str,
             aliases: list[str] | None = None) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(name, help=help_text, description=help_text, aliases=aliases or [])
    parser.set_defaults(handler=handler, error_exit_code=ENGINE_ERROR_EXIT)
    return parser


def _service(context: "Context") -> "NetworkService":
    # TODO: use an Engine.networks property once the engine façade has one.
    engine = context.engine
    service = getattr(engine, "networks", None)
    if service is not None:
        return service
    from dockyard.network.service import NetworkService

    return NetworkService(engine.config, engine.state)


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
    result = _service(context).create(
        args.name, driver=args.driver, subnet=args.subnet, gateway=args.gateway, internal=args.internal,
        labels=_key_values(args.label, "--label", require_value=False),
        options=_key_values(args.opt, "-o, --opt", require_value=True),
    )
    print(result["Id"])
    return 0


def list_networks(args: argparse.Namespace, context: "Context") -> int:
    from dockyard.cli import render
    from dockyard.cli.image import parse_filters

    # Docker's CLI lists networks sorted by name.
    networks = sorted(_service(context).list(filters=parse_filters(args.filter)), key=lambda network: network["Name"])
    ids = [network["Id"] if args.no_trunc else network["Id"][:12] for network in networks]
    if args.quiet:
        sys.stdout.write("".join(each + "\n" for each in ids))
        return 0
    rows = [{
        "ID": network_id,
        "Name": network["Name"],
        "Driver": network["Driver"],
        "Scope": network["Scope"],
        "IPv4": str(network["EnableIPv4"]).lower(),
        "IPv6": str(network["EnableIPv6"]).lower(),
        "Internal": str(network["Internal"]).lower(),
        "Labels": ",".join(f"{key}={value}" for key, value in sorted(network["Labels"].items())),
        "CreatedAt": network["Created"],
    } for network_id, network in zip(ids, networks)]
    if args.format and args.format != "table":
        sys.stdout.write(render.render_format(args.format, rows, NETWORK_HEADERS))
        return 0
    table = [["NETWORK ID", "NAME", "DRIVER", "SCOPE"]]
    table += [[row["ID"], row["Name"], row["Driver"], row["Scope"]] for row in rows]
    sys.stdout.write(render.format_table(table))
    return 0


def inspect(args: argparse.Namespace, context: "Context") -> int:
    from dockyard.cli.container import write_inspect
    from dockyard.errors import NotFound

    service = _service(context)
    found, missing = [], []
    for name in args.networks:
        try:
            found.append(service.inspect(name))
        except NotFound as error:
            missing.append(str(error))
    write_inspect(found, args.format)
    for message in missing:
        print(f"Error: {message}", file=sys.stderr)
    return ENGINE_ERROR_EXIT if missing else 0


def remove(args: argparse.Namespace, context: "Context") -> int:
    from dockyard.errors import DockyardError, NotFound

    service = _service(context)
    status = 0
    for name in args.networks:
        try:
            service.remove(name)
        except NotFound as error:
            if not args.force:
                print(f"Error: {error}", file=sys.stderr, flush=True)
                status = ENGINE_ERROR_EXIT
            continue
        except DockyardError as error:
            print(f"Error: {error}", file=sys.stderr, flush=True)
            status = ENGINE_ERROR_EXIT
            continue
        print(name, flush=True)
    return status


def _container(context: "Context", name: str) -> dict[str, Any]:
    from dockyard.errors import ContainerNotFound

    container_id = context.engine.containers.resolve(name)
    row = context.engine.state.container(container_id)
    if row is None:
        raise ContainerNotFound(name)
    return dict(row)


def _running_pid(row: dict[str, Any]) -> int | None:
    return int(row["pid"]) if row.get("status") in ("running", "paused") and row.get("pid") else None


def connect(args: argparse.Namespace, context: "Context") -> int:
    row = _container(context, args.container)
    endpoint_config: dict[str, Any] = {"Aliases": args.alias}
    if args.ip:
        endpoint_config["IPAMConfig"] = {"IPv4Address": args.ip}
    _service(context).connect(
        row["id"], args.network, name=row["name"], endpoint_config=endpoint_config, netns=_running_pid(row)
    )
    return 0


def disconnect(args: argparse.Namespace, context: "Context") -> int:
    row = _container(context, args.container)
    _service(context).disconnect(row["id"], args.network, force=args.force)
    return 0


def prune(args: argparse.Namespace, context: "Context") -> int:
    if not args.force:
        sys.stdout.write("WARNING! This will remove all custom networks not used by at least one container.\n"
                         "Are you sure you want to continue? [y/N] ")
        sys.stdout.flush()
        if sys.stdin.readline().strip().lower() not in ("y", "yes"):
            return 0
    removed = _service(context).prune()
    if removed:
        print("Deleted Networks:")
        for name in removed:
            print(name)
    return 0


def port(args: argparse.Namespace, context: "Context") -> int:
    from dockyard.errors import InvalidArgument
    from dockyard.network import ports

    row = _container(context, args.container)
    mappings = _service(context).published_ports(row["id"])
    if args.private_port:
        number, protocol = ports.split_port(args.private_port)
        selected = [m for m in mappings if m["ContainerPort"] == number and m["Protocol"] == protocol]
        if not selected:
            raise InvalidArgument(f"No public port '{number}/{protocol}' published for {row['name']}")
        for mapping in selected:
            host = mapping["HostIp"] or "0.0.0.0"
            host = f"[{host}]" if ":" in host else host
            print(f"{host}:{mapping['HostPort']}")
        return 0
    for mapping in sorted(mappings, key=lambda m: (m["ContainerPort"], m["Protocol"])):
        key = f"{mapping['ContainerPort']}/{mapping['Protocol']}"
        print(ports.format_mapping(key, mapping["HostIp"], mapping["HostPort"]))
    return 0
