"""Image commands: pull, push, images, tag, rmi, inspect, history, save, load, login, logout.

Each command is registered twice, as Docker does: at the top level
(``dockyard pull``, ``dockyard images``, ``dockyard rmi``) and in the
``image`` group (``dockyard image pull``, ``image ls``, ``image rm``).
Handlers parse, make one engine call and render; the engine is imported
only when a handler runs.
"""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING, Callable

from dockyard.cli import build as build_command
from dockyard.cli import import_ as import_command

if TYPE_CHECKING:
    from dockyard.cli.main import Context

# Docker's CLI exits 1 when the engine reports an error for these commands.
ENGINE_ERROR_EXIT = 1

IMAGE_HEADERS = {
    "ID": "IMAGE ID",
    "Repository": "REPOSITORY",
    "Tag": "TAG",
    "Digest": "DIGEST",
    "CreatedSince": "CREATED",
    "CreatedAt": "CREATED AT",
    "Size": "SIZE",
    "Containers": "CONTAINERS",
    "SharedSize": "SHARED SIZE",
    "UniqueSize": "UNIQUE SIZE",
    "VirtualSize": "VIRTUAL SIZE",
}

HISTORY_HEADERS = {
    "ID": "IMAGE",
    "CreatedSince": "CREATED",
    "CreatedAt": "CREATED AT",
    "CreatedBy": "CREATED BY",
    "Size": "SIZE",
    "Comment": "COMMENT",
}

# Docker shortens CREATED BY in history to this many characters, the last one an ellipsis.
CREATED_BY_WIDTH = 45

# The Go types Docker's templates see for a row, named in template errors.
IMAGE_CONTEXT_TYPE = "*formatter.imageContext"
HISTORY_CONTEXT_TYPE = "*formatter.historyContext"

# The values Go's strconv.ParseBool accepts, which Docker's boolean flags take after "=".
GO_BOOLEAN_VALUES = {
    "1": True, "t": True, "T": True, "true": True, "TRUE": True, "True": True,
    "0": False, "f": False, "F": False, "false": False, "FALSE": False, "False": False,
}


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the image commands to the top-level parser, and the ``image`` group."""
    add_pull(subparsers, "pull")
    add_push(subparsers, "push")
    add_list(subparsers, "images")
    add_tag(subparsers, "tag")
    add_remove(subparsers, "rmi")
    add_inspect(subparsers, "inspect", object_types=("container", "image"))
    add_history(subparsers, "history")
    add_save(subparsers, "save")
    add_load(subparsers, "load")
    add_login(subparsers)
    add_logout(subparsers)
    import_command.register(subparsers)

    group = subparsers.add_parser("image", help="Manage images", description="Manage images")

    def show_group_help(args: argparse.Namespace, context: "Context") -> int:
        group.print_help()
        return 0

    group.set_defaults(handler=show_group_help)
    commands = group.add_subparsers(dest="image_command", metavar="COMMAND", parser_class=type(group))
    add_pull(commands, "pull")
    add_push(commands, "push")
    add_list(commands, "ls", aliases=["list"])
    add_tag(commands, "tag")
    add_remove(commands, "rm", aliases=["remove", "rmi"])
    add_inspect(commands, "inspect")
    add_history(commands, "history")
    add_save(commands, "save")
    add_load(commands, "load")
    add_prune(commands, "prune")
    build_command.register(commands)
    import_command.register(commands)


def _command(subparsers: argparse._SubParsersAction, name: str, handler: Callable, help_text: str,
             aliases: list[str] | None = None) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(name, help=help_text, description=help_text, aliases=aliases or [])
    parser.set_defaults(handler=handler, error_exit_code=ENGINE_ERROR_EXIT)
    return parser


def add_boolean_flag(parser: argparse.ArgumentParser, short: str, long: str, default: bool, help_text: str) -> None:
    """Add a flag that works like a Go boolean flag: ``-H`` sets it, ``-H=false`` and ``--human=false`` clear it.

    As in Docker, a value must follow ``=``: ``-H false`` is the flag and then
    the argument ``false``. argparse matches an option string exactly before
    it splits at ``=``, so each ``FLAG=VALUE`` spelling is a hidden option.
    """
    dest = long.lstrip("-").replace("-", "_")
    parser.add_argument(short, long, dest=dest, action="store_true", default=default, help=help_text)
    for value, flag in GO_BOOLEAN_VALUES.items():
        action = "store_true" if flag else "store_false"
        parser.add_argument(f"{short}={value}", f"{long}={value}", dest=dest, action=action, help=argparse.SUPPRESS)


# -- pull and push ----------------------------------------------------------------


def add_pull(subparsers: argparse._SubParsersAction, name: str) -> None:
    parser = _command(subparsers, name, pull, "Download an image from a registry")
    parser.add_argument("name", metavar="NAME[:TAG|@DIGEST]")
    parser.add_argument("-q", "--quiet", action="store_true", help="print only the image reference")
    parser.add_argument("--platform", help="pull the image for this platform (os/arch[/variant]), not the host's")
    parser.add_argument("-a", "--all-tags", action="store_true",
                        help="download every tag that the registry lists for the repository")
    parser.add_argument("--disable-content-trust", action="store_true", default=True, help=argparse.SUPPRESS)


def pull(args: argparse.Namespace, context: "Context") -> int:
    from dockyard.cli import render
    from dockyard.image import reference as references

    ref = references.parse(args.name)
    if args.all_tags:
        with render.progress_printer(sys.stdout, quiet=args.quiet) as progress:
            context.engine.images.pull_all_tags(args.name, platform=args.platform, progress=progress)
        print(ref.repository)
        return 0
    if not args.quiet and references.is_name_only(args.name):
        print(f"Using default tag: {ref.tag}", flush=True)
    with render.progress_printer(sys.stdout, quiet=args.quiet) as progress:
        result = context.engine.images.pull(args.name, platform=args.platform, progress=progress)
    print(result.reference)
    return 0


def add_push(subparsers: argparse._SubParsersAction, name: str) -> None:
    parser = _command(subparsers, name, push, "Upload an image to a registry")
    parser.add_argument("name", metavar="NAME[:TAG]")
    parser.add_argument("-q", "--quiet", action="store_true", help="print only the pushed reference")
    parser.add_argument("-a", "--all-tags", action="store_true", help="push every local tag of the repository")


def push(args: argparse.Namespace, context: "Context") -> int:
    from dockyard.cli import render
    from dockyard.image import reference as references

    ref = references.parse(args.name)
    if args.all_tags:
        with render.progress_printer(sys.stdout, quiet=args.quiet) as progress:
            context.engine.images.push_all_tags(args.name, progress=progress)
        if args.quiet:
            print(ref.repository)
        return 0
    if not args.quiet and references.is_name_only(args.name):
        print(f"Using default tag: {ref.tag}", flush=True)
    with render.progress_printer(sys.stdout, quiet=args.quiet) as progress:
        result = context.engine.images.push(args.name, progress=progress)
    if args.quiet:
        print(result.reference)
    return 0


# -- listing ---------------------------------------------------------------------------


def add_list(subparsers: argparse._SubParsersAction, name: str, aliases: list[str] | None = None) -> None:
    parser = _command(subparsers, name, list_images, "List images", aliases)
    parser.add_argument("repository", nargs="?", metavar="REPOSITORY[:TAG]")
    parser.add_argument("-a", "--all", action="store_true", help="show all images (default hides intermediate images)")
    parser.add_argument("-q", "--quiet", action="store_true", help="print only image IDs")
    parser.add_argument("--digests", action="store_true", help="show digests")
    parser.add_argument("--no-trunc", action="store_true", help="do not truncate IDs")
    parser.add_argument("-f", "--filter", action="append", default=[], metavar="KEY=VALUE",
                        help="filter output: dangling=true|false, reference=PATTERN, label=KEY[=VALUE], before=IMAGE, since=IMAGE")
    parser.add_argument("--format", help="'table', 'json', or a Go template such as '{{.Repository}}:{{.Tag}}'")
    parser.add_argument("--tree", action="store_true", help=argparse.SUPPRESS)


def parse_filters(values: list[str]) -> dict[str, list[str]]:
    from dockyard.errors import InvalidArgument

    filters: dict[str, list[str]] = {}
    for value in values:
        key, equals, argument = value.partition("=")
        if not equals or not key:
            raise InvalidArgument(f"invalid filter {value!r}: use KEY=VALUE")
        filters.setdefault(key.strip().lower(), []).append(argument)
    return filters


def image_rows(summaries: list[dict], digests: bool, no_trunc: bool) -> list[dict]:
    """Expand image summaries into one row per repository and tag, as ``docker images`` shows them.

    ``digests`` fills the Digest field, as ``--digests`` or a template that
    uses ``{{.Digest}}`` does in Docker. Without it, Docker leaves Digest
    ``<none>`` on a tagged row and empty on a row of a digest only.
    """
    from dockyard.cli import render

    rows = []
    for summary in summaries:
        image_id = render.short_id(summary["Id"], no_trunc)
        digest_by_repository: dict[str, str] = {}
        for repo_digest in summary["RepoDigests"]:
            repository, _, digest = repo_digest.rpartition("@")
            digest_by_repository.setdefault(repository, digest)
        pairs = []
        for tag in summary["RepoTags"]:
            repository, _, tag_name = tag.rpartition(":")
            pairs.append((repository, tag_name))
        tagged = {repository for repository, _ in pairs}
        for repository in digest_by_repository:
            # An image pulled by digest has no tag in that repository; Docker shows it as REPOSITORY <none>.
            if repository not in tagged:
                pairs.append((repository, "<none>"))
        if not pairs:
            pairs.append(("<none>", "<none>"))
        for repository, tag_name in pairs:
            created = summary["Created"] or None
            if digests:
                digest = digest_by_repository.get(repository, "<none>")
            else:
                digest = "" if repository not in tagged and repository in digest_by_repository else "<none>"
            rows.append({
                "ID": image_id,
                "Repository": repository,
                "Tag": tag_name,
                "Digest": digest,
                "CreatedSince": render.time_ago(created),
                "CreatedAt": render.local_time(created),
                "Size": render.human_size(summary["Size"]),
                # Docker's image list does not count containers; only `system df` does.
                "Containers": "N/A",
                "SharedSize": "N/A",
                "UniqueSize": "N/A",
                "VirtualSize": render.human_size(summary["Size"]),
            })
    return rows


def list_images(args: argparse.Namespace, context: "Context") -> int:
    from dockyard.cli import render

    filters = parse_filters(args.filter)
    if args.repository:
        filters.setdefault("reference", []).append(args.repository)
    summaries = context.engine.images.list(all=args.all, filters=filters)
    show_digests = args.digests or "{{.Digest}}" in (args.format or "")
    rows = image_rows(summaries, show_digests, args.no_trunc)

    if args.quiet:
        # One line per row, as Docker prints it: an image with two tags appears twice.
        sys.stdout.write("".join(row["ID"] + "\n" for row in rows))
        return 0
    if args.format and args.format != "table":
        sys.stdout.write(render.render_format(args.format, rows, IMAGE_HEADERS, go_type=IMAGE_CONTEXT_TYPE))
        return 0
    columns = ["Repository", "Tag"] + (["Digest"] if args.digests else []) + ["ID", "CreatedSince", "Size"]
    table = [[IMAGE_HEADERS[column] for column in columns]]
    table += [[row[column] for column in columns] for row in rows]
    sys.stdout.write(render.format_table(table))
    return 0


# -- tag, rmi, prune -------------------------------------------------------------------


def add_tag(subparsers: argparse._SubParsersAction, name: str) -> None:
    parser = _command(subparsers, name, tag, "Create a tag TARGET_IMAGE that refers to SOURCE_IMAGE")
    parser.add_argument("source", metavar="SOURCE_IMAGE[:TAG]")
    parser.add_argument("target", metavar="TARGET_IMAGE[:TAG]")


def tag(args: argparse.Namespace, context: "Context") -> int:
    context.engine.images.tag(args.source, args.target)
    return 0


def add_remove(subparsers: argparse._SubParsersAction, name: str, aliases: list[str] | None = None) -> None:
    parser = _command(subparsers, name, remove, "Remove one or more images", aliases)
    parser.add_argument("images", nargs="+", metavar="IMAGE")
    parser.add_argument("-f", "--force", action="store_true", help="remove the image even if tagged in several repositories or used by a container")
    parser.add_argument("--no-prune", action="store_true", help="do not delete untagged parents (dockyard stores no parent images)")


def remove(args: argparse.Namespace, context: "Context") -> int:
    from dockyard.errors import DockyardError

    status = 0
    for name in args.images:
        try:
            entries = context.engine.images.remove(name, force=args.force)
        except DockyardError as error:
            # Docker goes on with the other images and exits non-zero at the end.
            print(f"Error: {error}", file=sys.stderr)
            status = ENGINE_ERROR_EXIT
            continue
        for entry in entries:
            for key, value in entry.items():
                print(f"{key}: {value}")
    return status


def add_prune(subparsers: argparse._SubParsersAction, name: str) -> None:
    parser = _command(subparsers, name, prune, "Remove unused images")
    parser.add_argument("-a", "--all", action="store_true", help="remove all images no container uses, not just dangling ones")
    parser.add_argument("-f", "--force", action="store_true", help="do not ask for confirmation")


def prune(args: argparse.Namespace, context: "Context") -> int:
    from dockyard.cli import render

    if not args.force:
        if args.all:
            warning = "WARNING! This will remove all images without at least one container associated to them."
        else:
            warning = "WARNING! This will remove all dangling images."
        sys.stdout.write(f"{warning}\nAre you sure you want to continue? [y/N] ")
        sys.stdout.flush()
        answer = sys.stdin.readline()
        if not sys.stdin.isatty() or not answer.endswith("\n"):
            # Nothing echoed a newline (input from a pipe or file, or end of input), so end the prompt's line here.
            sys.stdout.write("\n")
        # Like Docker, only "y" or "Y" confirms; anything else, or end of input, removes nothing.
        if answer.strip().lower() != "y":
            return 0
    result = context.engine.images.prune(all=args.all)
    if result.deleted:
        print("Deleted Images:")
        for entry in result.deleted:
            for key, value in entry.items():
                print(f"{key.lower()}: {value}")
        print()
    print(f"Total reclaimed space: {render.human_size(result.space_reclaimed)}")
    return 0


# -- inspect and history ---------------------------------------------------------------


def add_inspect(subparsers: argparse._SubParsersAction, name: str,
                object_types: tuple[str, ...] = ("image",)) -> None:
    """Add an inspect command; the top-level one looks up containers first, then images, as Docker does."""
    if object_types == ("image",):
        help_text = "Show detailed information on one or more images"
    else:
        help_text = "Show detailed information on containers or images"
    parser = _command(subparsers, name, inspect, help_text)
    parser.add_argument("images", nargs="+", metavar="IMAGE" if object_types == ("image",) else "NAME|ID")
    parser.add_argument("-f", "--format", help="'json' or a Go template such as '{{.Id}}' or '{{json .Config}}'")
    if len(object_types) > 1:
        parser.add_argument("--type", choices=list(object_types), help="only look up objects of this type")
        parser.add_argument("-s", "--size", action="store_true",
                            help="add SizeRw and SizeRootFs, the sizes in bytes, to containers")
    parser.set_defaults(object_types=object_types)


def _inspect_one(context: "Context", name: str, object_types: tuple[str, ...],
                 size: bool = False) -> tuple[dict | None, str]:
    """Return the first object of ``object_types`` named ``name``, or None and the last type's not-found message.

    Docker words a miss of every type as "No such object". dockyard keeps the
    image message ("No such image: x"), because the top-level inspect printed
    it before it also looked up containers.
    """
    from dockyard.errors import NotFound

    message = f"No such object: {name}"
    for object_type in object_types:
        try:
            if object_type == "container":
                return context.engine.containers.inspect(name, size=size), ""
            return context.engine.images.inspect(name), ""
        except NotFound as error:
            message = str(error)
    return None, message


def inspect(args: argparse.Namespace, context: "Context") -> int:
    from dockyard.cli.container import write_inspect

    object_types = args.object_types
    if getattr(args, "type", None):
        object_types = (args.type,)
    found: list[dict] = []
    missing: list[str] = []
    for name in args.images:
        result, message = _inspect_one(context, name, object_types, getattr(args, "size", False))
        if result is not None:
            found.append(result)
        else:
            missing.append(message)
    write_inspect(found, args.format)
    for message in missing:
        print(f"Error: {message}", file=sys.stderr)
    return ENGINE_ERROR_EXIT if missing else 0


def add_history(subparsers: argparse._SubParsersAction, name: str) -> None:
    parser = _command(subparsers, name, history, "Show the history of an image")
    parser.add_argument("image", metavar="IMAGE")
    parser.add_argument("--no-trunc", action="store_true", help="do not truncate output")
    parser.add_argument("-q", "--quiet", action="store_true", help="print only image IDs")
    add_boolean_flag(parser, "-H", "--human", True,
                     "print sizes and dates in human-readable form (default true; clear it with --human=false)")
    parser.add_argument("--format", help="'table', 'json', or a Go template such as '{{.CreatedBy}}'")
    parser.add_argument("--platform", help="not supported: an image has one platform locally")


def history(args: argparse.Namespace, context: "Context") -> int:
    from dockyard.cli import render
    from dockyard.errors import InvalidArgument

    if args.platform:
        raise InvalidArgument("history --platform is not supported: dockyard stores one platform per image")
    human = args.human
    rows = []
    for item in context.engine.images.history(args.image):
        image_id = item["Id"] if item["Id"] == "<missing>" else render.short_id(item["Id"], args.no_trunc)
        created_by = item["CreatedBy"].replace("\t", " ")
        if not args.no_trunc and len(created_by) > CREATED_BY_WIDTH:
            created_by = created_by[:CREATED_BY_WIDTH - 1] + "…"
        created = item["Created"] or None
        rows.append({
            "ID": image_id,
            "CreatedSince": render.time_ago(created) if human else render.rfc3339_time(created),
            "CreatedAt": render.rfc3339_time(created),
            "CreatedBy": created_by,
            "Size": render.human_size(item["Size"]) if human else str(item["Size"]),
            "Comment": item["Comment"],
        })
    if args.quiet:
        sys.stdout.write("".join(row["ID"] + "\n" for row in rows))
        return 0
    if args.format and args.format != "table":
        sys.stdout.write(render.render_format(args.format, rows, HISTORY_HEADERS, go_type=HISTORY_CONTEXT_TYPE))
        return 0
    columns = ["ID", "CreatedSince", "CreatedBy", "Size", "Comment"]
    table = [[HISTORY_HEADERS[column] for column in columns]]
    table += [[row[column] for column in columns] for row in rows]
    sys.stdout.write(render.format_table(table))
    return 0


# -- save and load ---------------------------------------------------------------------


def add_save(subparsers: argparse._SubParsersAction, name: str) -> None:
    parser = _command(subparsers, name, save, "Save one or more images to a tar archive (streamed to stdout by default)")
    parser.add_argument("images", nargs="+", metavar="IMAGE")
    parser.add_argument("-o", "--output", help="write to this file instead of stdout")
    parser.add_argument("--platform", help="not supported: an image has one platform locally")


def save(args: argparse.Namespace, context: "Context") -> int:
    import os
    from pathlib import Path

    from dockyard.errors import InvalidArgument

    if args.platform:
        raise InvalidArgument("save --platform is not supported: dockyard stores one platform per image")
    if not args.output:
        if sys.stdout.isatty():
            raise InvalidArgument("cowardly refusing to save to a terminal. Use the -o flag or redirect")
        sys.stdout.flush()
        context.engine.images.save(args.images, sys.stdout.buffer)
        sys.stdout.buffer.flush()
        return 0
    # Write beside the target and rename, so a failed save leaves no truncated archive.
    target = Path(args.output)
    partial = target.with_name(f".{target.name}.partial")
    try:
        with open(partial, "wb") as out:
            context.engine.images.save(args.images, out)
        os.replace(partial, target)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    return 0


def add_load(subparsers: argparse._SubParsersAction, name: str) -> None:
    parser = _command(subparsers, name, load, "Load images from a tar archive or stdin")
    parser.add_argument("-i", "--input", help="read from this tar archive file instead of stdin")
    parser.add_argument("-q", "--quiet", action="store_true", help="print only the names of the loaded images, no progress")
    parser.add_argument("--platform", help="not supported: an image has one platform locally")


def load(args: argparse.Namespace, context: "Context") -> int:
    from dockyard.errors import InvalidArgument

    if args.platform:
        raise InvalidArgument("load --platform is not supported: dockyard stores one platform per image")
    if args.input:
        try:
            source = open(args.input, "rb")
        except OSError as error:
            raise InvalidArgument(f"cannot open {args.input}: {error.strerror}") from error
        with source:
            names = context.engine.images.load(source)
    else:
        if sys.stdin.isatty():
            raise InvalidArgument("requested load from stdin, but stdin is a terminal: use -i FILE or redirect")
        names = context.engine.images.load(sys.stdin.buffer)
    # Docker's -q hides only the progress, so the names are printed either way.
    for loaded in names:
        if loaded.startswith("sha256:"):
            print(f"Loaded image ID: {loaded}")
        else:
            print(f"Loaded image: {loaded}")
    return 0


# -- login and logout ------------------------------------------------------------------


def add_login(subparsers: argparse._SubParsersAction) -> None:
    parser = _command(subparsers, "login", login, "Log in to a registry")
    parser.add_argument("server", nargs="?", default="docker.io", metavar="SERVER")
    parser.add_argument("-u", "--username", help="user name")
    parser.add_argument("-p", "--password", help="password or token (visible to other users: prefer --password-stdin)")
    parser.add_argument("--password-stdin", action="store_true", help="read the password from stdin")


def login(args: argparse.Namespace, context: "Context") -> int:
    from dockyard.errors import InvalidArgument

    password = args.password
    if args.password_stdin:
        if password:
            raise InvalidArgument("--password and --password-stdin are mutually exclusive")
        if not args.username:
            raise InvalidArgument("must provide --username with --password-stdin")
        password = sys.stdin.read().rstrip("\r\n")
    username = args.username
    if not username:
        if not sys.stdin.isatty():
            raise InvalidArgument(f"cannot log in to {args.server}: give --username, and the password with --password-stdin")
        username = input("Username: ").strip()
    if password is None:
        import getpass

        password = getpass.getpass("Password: ")
    if not username or not password:
        raise InvalidArgument(f"cannot log in to {args.server}: user name and password must not be empty")
    if args.password:
        print("WARNING! Using --password via the CLI is insecure. Use --password-stdin.", file=sys.stderr)
    domain = context.engine.images.login(args.server, username, password)
    unencrypted = context.engine.images.unencrypted_credentials_path(domain)
    if unencrypted is not None:
        print(
            f"\nWARNING! Your credentials are stored unencrypted in '{unencrypted}'.\n"
            "Configure a credential helper to remove this warning. See\n"
            "https://docs.docker.com/go/credential-store/\n",
            file=sys.stderr,
        )
    print("Login Succeeded")
    return 0


def add_logout(subparsers: argparse._SubParsersAction) -> None:
    parser = _command(subparsers, "logout", logout, "Log out from a registry")
    parser.add_argument("server", nargs="?", default="docker.io", metavar="SERVER")


def logout(args: argparse.Namespace, context: "Context") -> int:
    removed = context.engine.images.logout(args.server)
    if removed:
        print(f"Removing login credentials for {args.server}")
    else:
        print(f"Not logged in to {args.server}")
    return 0

