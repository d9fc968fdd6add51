"""The ``import`` command: make a one-layer image from a root filesystem tarball or directory."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from dockyard.cli.main import Context

# docker import exits 1 when the import fails.
IMPORT_ERROR_EXIT = 1


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``import`` command to ``subparsers``: the top level, or the ``image`` group."""
    help_text = "Import the contents from a tarball to create a filesystem image"
    parser = subparsers.add_parser("import", help=help_text, description=help_text,
                                   usage=f"{subparsers._prog_prefix} import [OPTIONS] file|URL|-|DIRECTORY [REPOSITORY[:TAG]]")
    parser.set_defaults(handler=import_command, error_exit_code=IMPORT_ERROR_EXIT)
    parser.add_argument("source", metavar="file|URL|-|DIRECTORY",
                        help="a tar archive (plain, gzip or zstd) as a file, an http or https URL, or - for "
                             "standard input; or a directory")
    parser.add_argument("reference", metavar="REPOSITORY[:TAG]", nargs="?", help="the name to tag the image with")
    parser.add_argument("-c", "--change", action="append", default=[], metavar="INSTRUCTION",
                        help="apply a Dockerfile instruction to the image: CMD, ENTRYPOINT, ENV, EXPOSE, LABEL, "
                             "USER, WORKDIR or VOLUME (repeatable)")
    parser.add_argument("-m", "--message", default="", help="set the commit message of the imported image")
    parser.add_argument("--platform", help="the platform of the image; only the host's platform is supported")


def import_command(args: argparse.Namespace, context: "Context") -> int:
    from pathlib import Path

    from dockyard.build import remote
    from dockyard.build.importing import import_image
    from dockyard.errors import InvalidArgument
    from dockyard.image import platform as platforms

    if args.platform and not platforms.parse(args.platform).matches(platforms.host()):
        raise InvalidArgument(f"--platform {args.platform}: only the host's platform can be imported")
    options = {"changes": args.change, "message": args.message, "source_name": args.source}
    if args.source == "-":
        image_id = import_image(context.engine, sys.stdin.buffer, args.reference, **options)
    elif remote.is_url(args.source):
        download = remote.download(args.source, context.engine.root / "tmp")
        try:
            with open(download.path, "rb") as file:
                image_id = import_image(context.engine, file, args.reference, **options)
        finally:
            download.remove()
    elif Path(args.source).is_dir():
        image_id = import_image(context.engine, Path(args.source), args.reference, **options)
    else:
        with open(args.source, "rb") as file:
            image_id = import_image(context.engine, file, args.reference, **options)
    print(image_id)
    return 0
