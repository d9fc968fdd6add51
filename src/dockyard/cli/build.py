"""The ``build`` command: build an image from a Dockerfile, with the legacy Docker builder's output."""

from __future__ import annotations

import argparse
import os
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from dockyard.cli.main import Context

# docker build exits 1 when the build fails.
BUILD_ERROR_EXIT = 1


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``build`` command to ``subparsers``: the top level, or the ``image`` group for ``image build``."""
    parser = subparsers.add_parser("build", help="Build an image from a Dockerfile",
                                   description="Build an image from a Dockerfile",
                                   usage=f"{subparsers._prog_prefix} build [OPTIONS] PATH | -")
    parser.set_defaults(handler=build, error_exit_code=BUILD_ERROR_EXIT)
    parser.add_argument("path", metavar="PATH", help="the build context: a directory, or - for a tar (or a Dockerfile) on standard input")
    parser.add_argument("-t", "--tag", action="append", default=[], help="name and optionally a tag for the image, name:tag (repeatable)")
    parser.add_argument("-f", "--file", help="the Dockerfile (default PATH/Dockerfile; - reads it from standard input)")
    parser.add_argument("--build-arg", action="append", default=[], metavar="KEY[=VALUE]",
                        help="set a build-time variable; KEY alone takes its value from the environment")
    parser.add_argument("--target", help="the build stage to build; default the last one")
    parser.add_argument("--no-cache", action="store_true", help="do not use the build cache")
    parser.add_argument("--pull", action="store_true", help="always pull the images that FROM names")
    parser.add_argument("--label", action="append", default=[], metavar="KEY=VALUE", help="set a label on the image")
    parser.add_argument("-q", "--quiet", action="store_true", help="print only the image ID on success")
    parser.add_argument("--iidfile", help="write the image ID to this file")


def _pairs(values: list[str], flag: str, from_environment: bool) -> dict[str, str]:
    from dockyard.errors import InvalidArgument

    result: dict[str, str] = {}
    for value in values:
        key, equals, item = value.partition("=")
        if not key:
            raise InvalidArgument(f"invalid {flag} {value!r}: use KEY=VALUE")
        if equals:
            result[key] = item
        elif from_environment:
            if key in os.environ:
                result[key] = os.environ[key]
        else:
            result[key] = ""
    return result


def build(args: argparse.Namespace, context: "Context") -> int:
    from dockyard.build.builder import Builder, BuildOptions
    from dockyard.build.context import BuildContext, human_size, looks_like_tar, peekable, read_dockerfile
    from dockyard.errors import InvalidArgument

    engine = context.engine
    work_dir = engine.root / "tmp"
    dockerfile_text: str | None = None
    if args.path == "-":
        if args.file == "-":
            raise InvalidArgument("invalid argument: can't use stdin for both build context and dockerfile")
        head, stream = peekable(sys.stdin.buffer)
        if looks_like_tar(head):
            build_context = BuildContext.from_tar(stream, work_dir)  # type: ignore[arg-type]
        else:
            build_context = BuildContext.empty(work_dir)
            dockerfile_text = stream.read().decode()  # the stream yields the peeked bytes again
    else:
        build_context = BuildContext.from_directory(args.path)
    if args.file == "-":
        dockerfile_text = sys.stdin.read()

    quiet = args.quiet

    def output(text: str) -> None:
        if not quiet:
            sys.stdout.write(text)
            sys.stdout.flush()

    options = BuildOptions(
        tags=list(args.tag),
        build_args=_pairs(args.build_arg, "--build-arg", from_environment=True),
        target=args.target,
        no_cache=args.no_cache,
        pull=args.pull,
        labels=_pairs(args.label, "--label", from_environment=False),
    )
    with build_context:
        if dockerfile_text is None:
            dockerfile_text = read_dockerfile(build_context, args.file)
        # The legacy docker client's first line; two spaces before the size, as docker writes it.
        output(f"Sending build context to dockyard  {human_size(build_context.tar_size())}\n")
        result = Builder(engine, output).build(build_context, dockerfile_text, options)
    if quiet:
        print(result.image_id)
    if args.iidfile:
        with open(args.iidfile, "w") as file:
            file.write(result.image_id)
    return 0
