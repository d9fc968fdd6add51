"""The build executor: runs a parsed Dockerfile step by step, as Docker's legacy builder does.

Each stage starts from its ``FROM`` image. ``RUN`` runs in a temporary
container of the current image, whose upper directory then becomes a new
layer, as ``commit`` makes one. The container is removed whether the
command succeeds or not. ``COPY`` and ``ADD`` write a layer directly from a
tar stream made in Python. ``ADD`` of an http or https URL downloads the file
first (``remote.py``) and stores it unextracted. Every other instruction
changes only the config and adds an ``empty_layer`` history entry.

``FROM --platform`` pulls the image for that platform. A stage whose image
is for another platform than the host's can run COPY, ADD and metadata
steps, but a RUN step fails, because nothing here emulates another CPU.

The image after each step is known by its config digest. Only images that a
``RUN`` container needs, and the final image, are recorded in the state
database. An intermediate image recorded for a ``RUN`` is deleted again
afterwards, so ``images`` does not list it. The whole build holds the shared
GC lock, so garbage collection cannot remove a snapshot that a later step
still builds on.

Output is sent, as text, to the ``output`` callable: ``Step N/M : ...``,
`` ---> Using cache``, `` ---> <short id>``, the output of ``RUN`` commands,
and ``Successfully built``/``Successfully tagged`` at the end.
"""

from __future__ import annotations

import json
import logging
import os
import posixpath
import re
import shutil
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Iterator

from dockyard.build import dockerfile as dockerfiles
from dockyard.build import metadata
from dockyard.build.cache import BuildCache, step_key
from dockyard.build.context import BuildContext
from dockyard.build.dockerfile import Instruction
from dockyard.build.layers import ImageState, Layering, layer_from_json, layer_to_json, scratch_config
from dockyard.errors import BuildError, ImageNotFound

if TYPE_CHECKING:
    from dockyard.engine import Engine

log = logging.getLogger(__name__)

NOP = "/bin/sh -c #(nop) "

# Build arguments every Dockerfile may use without declaring them; they are left out of the history.
PREDEFINED_ARGS = frozenset({
    "HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "FTP_PROXY", "ftp_proxy", "NO_PROXY", "no_proxy",
    "ALL_PROXY", "all_proxy",
})

# Flags each instruction accepts; any other flag is rejected by name. ``--link`` changes
# only how BuildKit stores the layer, not its content, so it is accepted and has no effect.
ACCEPTED_FLAGS = {
    "FROM": {"platform"},
    "RUN": set(),
    "COPY": {"from", "chown", "chmod", "link"},
    "ADD": {"chown", "chmod", "link"},
    "HEALTHCHECK": {"interval", "timeout", "start-period", "start-interval", "retries"},
}



@dataclass
class BuildOptions:
    tags: list[str] = field(default_factory=list)
    build_args: dict[str, str] = field(default_factory=dict)
    target: str | None = None
    no_cache: bool = False
    pull: bool = False
    labels: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class BuildResult:
    image_id: str
    tags: list[str]


@dataclass
class Stage:
    """A ``FROM`` section of the Dockerfile and the image it has made so far."""

    index: int
    name: str | None
    from_instruction: Instruction
    instructions: list[Instruction] = field(default_factory=list)
    image: ImageState = field(default_factory=lambda: ImageState({}))
    args: dict[str, str] = field(default_factory=dict)   # declared ARGs that have a value
    cmd_set: bool = False
    # The FROM --platform value when it is not the host's platform; RUN cannot run then.
    foreign_platform: str | None = None

    def variables(self) -> dict[str, str]:
        """Return the values substitution sees: the stage's ARGs, overridden by its ENV."""
        env = dict(self.args)
        for entry in self.image.container_config.get("Env") or []:
            key, _, value = entry.partition("=")
            env[key] = value
        return env


def short_id(image_id: str) -> str:
    return image_id.split(":", 1)[-1][:12]


class Builder:
    """The Dockerfile executor of one engine's root; ``output`` receives the build's text output."""

    def __init__(self, engine: "Engine", output: Callable[[str], None]) -> None:
        self.engine = engine
        self.images = engine.images
        self.output = output
        self.layering = Layering(self.images)
        self.cache = BuildCache(engine.root)

    # -- the build ---------------------------------------------------------------------------

    def build(self, context: BuildContext, dockerfile_text: str, options: BuildOptions) -> BuildResult:
        """Build the Dockerfile's target stage (the last one unless ``options.target``); returns its image ID."""
        from dockyard.engine import locks
        from dockyard.image import reference as references

        # An invalid -t fails before the build starts, not after it.
        tags = [references.parse_repository(tag).familiar() for tag in options.tags]
        parsed = dockerfiles.parse(dockerfile_text)
        self.escape = parsed.escape
        self.context = context
        self.options = options
        meta, stages = self._split_stages(parsed.instructions)
        target_index = self._target_index(stages, options.target)
        stages = stages[:target_index + 1]
        if options.labels:
            text = " ".join(f"{json.dumps(key)}={json.dumps(value)}" for key, value in sorted(options.labels.items()))
            stages[-1].instructions.append(Instruction("LABEL", text, 0, f"LABEL {text}"))
        self.total = len(meta) + sum(1 + len(stage.instructions) for stage in stages)
        self.step = 0
        self.used_args: set[str] = set()

        with locks.gc_lock(self.engine.root, exclusive=False):
            self.meta_args = self._meta_args(meta)
            self.stages: list[Stage] = []
            for stage in stages:
                self.stages.append(stage)
                self._run_stage(stage)
            final = stages[-1].image
            unused = sorted(set(options.build_args) - self.used_args - PREDEFINED_ARGS)
            if unused:
                self.output(f"[Warning] One or more build-args [{' '.join(unused)}] were not consumed\n")
            image_id = self.layering.record(final, options.tags)
        self.output(f"Successfully built {short_id(image_id)}\n")
        for tag in tags:
            self.output(f"Successfully tagged {tag}\n")
        return BuildResult(image_id, tags)

    def _split_stages(self, instructions: list[Instruction]) -> tuple[list[Instruction], list[Stage]]:
        meta: list[Instruction] = []
        stages: list[Stage] = []
        for instruction in instructions:
            if instruction.keyword == "FROM":
                stages.append(Stage(len(stages), None, instruction))
            elif not stages:
                if instruction.keyword != "ARG":
                    raise BuildError(
                        f"Dockerfile line {instruction.line}: {instruction.keyword} before the first FROM; "
                        "only ARG may come before FROM"
                    )
                meta.append(instruction)
            else:
                stages[-1].instructions.append(instruction)
        if not stages:
            raise BuildError("the Dockerfile has no FROM instruction: a Dockerfile must begin with FROM")
        for stage in stages:
            words = stage.from_instruction.arguments.split()
            if len(words) == 3 and words[1].lower() == "as":
                stage.name = words[2].lower()
            elif len(words) != 1:
                raise BuildError(f"Dockerfile line {stage.from_instruction.line}: FROM requires either one or three arguments")
        return meta, stages

    @staticmethod
    def _target_index(stages: list[Stage], target: str | None) -> int:
        if target is None:
            return len(stages) - 1
        for stage in stages:
            if stage.name == target.lower():
                return stage.index
        raise BuildError(f"failed to reach build target {target} in Dockerfile")

    def _begin_step(self, instruction: Instruction) -> None:
        self.step += 1
        self.output(f"Step {self.step}/{self.total} : {instruction.original}\n")

    def _meta_args(self, meta: list[Instruction]) -> dict[str, str]:
        values: dict[str, str] = {}
        for instruction in meta:
            self._begin_step(instruction)
            for name, default in self._arg_declarations(instruction, values):
                self.used_args.add(name)
                if name in self.options.build_args:
                    values[name] = self.options.build_args[name]
                elif default is not None:
                    values[name] = default
        return values

    def _arg_declarations(self, instruction: Instruction, variables: dict[str, str]) -> list[tuple[str, str | None]]:
        declarations = []
        for word in dockerfiles.split_words(instruction.arguments, self.escape):
            name, equals, default = word.partition("=")
            if not name:
                raise BuildError(f"Dockerfile line {instruction.line}: ARG requires a name: {instruction.original}")
            declarations.append((name, dockerfiles.expand(default, variables, self.escape) if equals else None))
        if not declarations:
            raise BuildError(f"Dockerfile line {instruction.line}: ARG requires at least one argument")
        return declarations

    # -- stages --------------------------------------------------------------------------------

    def _run_stage(self, stage: Stage) -> None:
        instruction = stage.from_instruction
        self._begin_step(instruction)
        if set(instruction.flags) - ACCEPTED_FLAGS["FROM"]:
            raise BuildError(f"Dockerfile line {instruction.line}: unknown flag for FROM: {sorted(instruction.flags)}")
        name = dockerfiles.expand(instruction.arguments.split()[0], self.meta_args, self.escape)
        if not name:
            raise BuildError(
                f"Dockerfile line {instruction.line}: {instruction.original} names no image after substitution; "
                "declare the variable with ARG before the first FROM, or pass it with --build-arg"
            )
        platform = instruction.flags.get("platform")
        if platform is not None:
            platform = dockerfiles.expand(platform, self.meta_args, self.escape)
        stage.image = self._base_image(name, platform)
        for earlier in self.stages[:-1]:
            if earlier.name == name.lower():
                stage.foreign_platform = earlier.foreign_platform   # a stage built on a foreign stage
        if platform is not None:
            from dockyard.image import platform as platforms

            if not any(platforms.parse(platform).matches(each) for each in platforms.host().compatible()):
                stage.foreign_platform = platform
        self.output(f" ---> {short_id(stage.image.image_id)}\n")
        triggers = stage.image.container_config.get("OnBuild") or []
        if triggers:
            stage.image = stage.image.copy()
            stage.image.container_config["OnBuild"] = None
            self.output(f"# Executing {len(triggers)} build trigger{'s' if len(triggers) > 1 else ''}\n")
            for trigger in dockerfiles.parse("\n".join(triggers)).instructions:
                self._dispatch(stage, trigger)
        for instruction in stage.instructions:
            self._begin_step(instruction)
            self._dispatch(stage, instruction)
            self.output(f" ---> {short_id(stage.image.image_id)}\n")

    def _base_image(self, name: str, platform: str | None) -> ImageState:
        """Return the image a ``FROM`` names: an earlier stage, ``scratch``, or a local or pulled image.

        With ``--platform`` the image is pulled for that platform unless the
        local one already matches it. An image of a foreign platform can be
        the base of COPY, ADD and metadata steps, but its RUN steps fail.
        """
        for stage in self.stages[:-1]:
            if stage.name == name.lower():
                return stage.image
        if name == "scratch":
            from dockyard.image import platform as platforms

            target = platforms.parse(platform) if platform else platforms.host()
            return ImageState(scratch_config(target.os, target.architecture, target.variant))
        return self._image(name, platform)

    def _image(self, name: str, platform: str | None = None) -> ImageState:
        image_id = None
        if not self.options.pull:
            try:
                image_id = self.images.resolve(name)
            except ImageNotFound:
                image_id = None
        if image_id is not None and platform is not None:
            from dockyard.image import platform as platforms

            record = self.images.state.image(image_id)
            local = platforms.Platform(record.os, record.architecture, record.variant) if record else None
            if local is None or not platforms.parse(platform).matches(local):
                image_id = None
        if image_id is None:
            image_id = self.images.pull(name, platform=platform).image_id
        record = self.images.state.image(image_id)
        if record is None:
            raise ImageNotFound(name)
        return ImageState(json.loads(record.config), self.images.state.image_layers(image_id), raw=record.config)

    # -- steps -----------------------------------------------------------------------------------

    def _dispatch(self, stage: Stage, instruction: Instruction) -> None:
        keyword = instruction.keyword
        allowed = ACCEPTED_FLAGS.get(keyword, set())
        unknown = sorted(set(instruction.flags) - allowed)
        if unknown:
            raise BuildError(f"Dockerfile line {instruction.line}: {keyword} --{unknown[0]} is not supported")
        if keyword == "RUN":
            self._run(stage, instruction)
        elif keyword in ("COPY", "ADD"):
            self._copy(stage, instruction)
        elif keyword == "WORKDIR":
            self._workdir(stage, instruction)
        elif keyword == "ARG":
            self._arg(stage, instruction)
        else:
            self._metadata(stage, instruction)

    def _cached(self, key: str) -> ImageState | None:
        """Return the image a cache entry records, or None (and drop the entry) when its layers are gone."""
        if self.options.no_cache:
            return None
        entry = self.cache.get(key)
        if entry is None:
            return None
        try:
            layers = [layer_from_json(values) for values in entry["layers"]]
            raw = entry["config"].encode()
            config = json.loads(raw)
        except (KeyError, TypeError, ValueError, AttributeError, BuildError):
            self.cache.remove(key)
            return None
        if not self.layering.is_complete(layers):
            self.cache.remove(key)
            return None
        return ImageState(config, layers, raw=raw)

    def _step(self, stage: Stage, key_text: str, make: Callable[[ImageState], None], files_digest: str | None = None) -> None:
        """Run one step through the cache: reuse a cached image, or ``make`` a new one from a copy of the current."""
        key = step_key(stage.image.image_id, key_text, files_digest)
        cached = self._cached(key)
        if cached is not None:
            self.output(" ---> Using cache\n")
            stage.image = cached
            return
        image = stage.image.copy()
        make(image)
        stage.image = ImageState(image.config, image.layers, raw=image.config_bytes)
        self.cache.put(key, {"config": image.config_bytes.decode(), "layers": [layer_to_json(layer) for layer in image.layers]})

    def _nop(self, stage: Stage, text: str, change: Callable[[dict[str, Any]], None]) -> None:
        """Run a step that changes only the config, with an ``empty_layer`` history entry as Docker writes it."""
        def make(image: ImageState) -> None:
            change(image.container_config)
            image.with_history(f"{NOP} {text}", empty_layer=True)

        self._step(stage, text, make)

    def _expand(self, stage: Stage, text: str) -> str:
        return dockerfiles.expand(text, stage.variables(), self.escape)

    def _expand_words(self, stage: Stage, instruction: Instruction) -> list[str]:
        json_form = instruction.json_form()
        variables = stage.variables()
        if json_form is not None:
            return [dockerfiles.expand(word, variables, self.escape) for word in json_form]
        return dockerfiles.expand_words(instruction.arguments, variables, self.escape)

    def _arg(self, stage: Stage, instruction: Instruction) -> None:
        texts = []
        declarations = self._arg_declarations(instruction, stage.variables())
        for name, default in declarations:
            self.used_args.add(name)
            if name in self.options.build_args:
                stage.args[name] = self.options.build_args[name]
            elif default is not None:
                stage.args[name] = default
            elif name in self.meta_args:
                stage.args[name] = self.meta_args[name]
            texts.append(f"{name}={default}" if default is not None else name)
        # The values, which a later RUN sees, are part of the key.
        key = "ARG " + " ".join(texts) + " " + json.dumps({name: stage.args.get(name) for name, _ in declarations})
        self._step(stage, key, lambda image: image.with_history(f"{NOP} ARG {' '.join(texts)}", empty_layer=True))

    def _metadata(self, stage: Stage, instruction: Instruction) -> None:
        variables = stage.variables()
        config = stage.image.container_config
        change = metadata.plan(instruction, variables, self.escape, config)
        if instruction.keyword == "ENTRYPOINT" and not stage.cmd_set:
            # Docker's rule: an ENTRYPOINT clears the Cmd inherited from the base image, but not one set in this stage.
            change = metadata.also_clear_cmd(change)
        if instruction.keyword == "CMD":
            stage.cmd_set = True

        def make(image: ImageState) -> None:
            change.apply(image.config)
            image.with_history(f"{NOP} {change.text}", empty_layer=True)

        self._step(stage, change.text, make)

    # -- WORKDIR ---------------------------------------------------------------------------------

    def _workdir(self, stage: Stage, instruction: Instruction) -> None:
        """Set the working directory, creating it (owned by the current USER) when the image lacks it."""
        from dockyard.build import copying
        from dockyard.engine.filesystem import lower_lookup

        path = self._expand(stage, instruction.arguments.strip())
        if not path:
            raise BuildError(f"Dockerfile line {instruction.line}: WORKDIR requires exactly one argument")
        config = stage.image.container_config
        workdir = posixpath.normpath(posixpath.join(config.get("WorkingDir") or "/", path))
        lowers = self.layering.lowers(stage.image)
        exists = lower_lookup(lowers, workdir.lstrip("/")) is not None if lowers else workdir == "/"
        user = config.get("User") or ""

        def make(image: ImageState) -> None:
            image.container_config["WorkingDir"] = workdir
            if exists:
                image.with_history(f"{NOP} WORKDIR {workdir}", empty_layer=True)
                return
            owner = copying.resolve_owner(user, lowers, "WORKDIR") if user else copying.Owner(0, 0)
            item = copying.Item(workdir, "dir", None, copying.NEW_DIRECTORY_MODE, 0)
            self.layering.add(image, lambda out: copying.write_tar(
                out, [item], owner, lambda relative: lower_lookup(lowers, relative), owner))
            image.with_history(f"{NOP} WORKDIR {workdir}", empty_layer=False)

        self._step(stage, f"WORKDIR {workdir} user={user}", make)

    # -- RUN --------------------------------------------------------------------------------------

    def _run(self, stage: Stage, instruction: Instruction) -> None:
        if stage.foreign_platform is not None:
            # dockyard sets up no emulation (binfmt_misc with QEMU), so the kernel would fail the exec.
            raise BuildError(
                f"Dockerfile line {instruction.line}: RUN cannot run in an image for {stage.foreign_platform} on this "
                "host's platform; only COPY, ADD and metadata instructions work on a foreign platform"
            )
        json_form = instruction.json_form()
        if json_form is not None:
            argv = json_form
        else:
            command = instruction.arguments
            if instruction.heredocs:
                only = dockerfiles.HEREDOC_PATTERN.fullmatch(command.strip())
                if only and len(instruction.heredocs) == 1:
                    command = instruction.heredocs[0].content  # "RUN <<EOF": the heredoc is the script
                else:
                    command += "\n" + "".join(f"{doc.content}{doc.name}\n" for doc in instruction.heredocs)
            shell = stage.image.container_config.get("Shell") or metadata.DEFAULT_SHELL
            argv = [*shell, command]
        # Declared build arguments that ENV does not override are in the command's environment.
        env_keys = {entry.partition("=")[0] for entry in stage.image.container_config.get("Env") or []}
        build_env = {name: value for name, value in sorted(stage.args.items()) if name not in env_keys}
        for name in PREDEFINED_ARGS & set(self.options.build_args):
            build_env.setdefault(name, self.options.build_args[name])
        history_args = {name: value for name, value in build_env.items() if name not in PREDEFINED_ARGS}
        created_by = " ".join(argv)
        if history_args:
            created_by = f"|{len(history_args)} " + " ".join(f"{k}={v}" for k, v in history_args.items()) + " " + created_by

        def make(image: ImageState) -> None:
            self._run_container(stage.image, image, argv, build_env)
            image.with_history(created_by, empty_layer=False)

        self._step(stage, f"RUN {created_by}", make)

    def _run_container(self, base: ImageState, image: ImageState, argv: list[str], env: dict[str, str]) -> None:
        """Run ``argv`` in a temporary container of ``base`` and add its changes to ``image`` as a layer."""
        from dockyard.engine.filesystem import Layers, changes, write_layer

        containers = self.engine.containers
        state = self.images.state
        image_id = base.image_id
        recorded_here = state.image(image_id) is None
        if recorded_here:
            self.layering.record(base)
        try:
            body = {
                "Image": image_id,
                "Cmd": argv,
                "Entrypoint": [""],
                "Env": [f"{key}={value}" for key, value in env.items()],
                "AttachStdout": True,
                "AttachStderr": True,
                "Labels": {},
                "HostConfig": {},
            }
            container_id = containers.create(body)
            try:
                self.output(f" ---> Running in {container_id[:12]}\n")
                with containers.attach(container_id, stdin=False, stdout=True, stderr=True) as attachment:
                    containers.start(container_id)
                    self._pump(attachment)
                status = containers.wait(container_id)["StatusCode"]
                if status != 0:
                    failure = BuildError(f"The command '{' '.join(argv)}' returned a non-zero code: {status}")
                    # docker prints this line without its usual "Error: " prefix.
                    failure.plain_message = True  # type: ignore[attr-defined]
                    raise failure
                info = containers.inspect(container_id)
                mount_points = self._mount_points(container_id)
                layers = Layers.of(info)
                items = changes(layers, mount_points)
                self.layering.add(image, lambda out: write_layer(layers, items, out))
            finally:
                containers.remove(container_id, force=True, volumes=True)
                self.output(f"Removing intermediate container {container_id[:12]}\n")
        finally:
            if recorded_here:
                state.delete_image(image_id)

    def _pump(self, attachment: Any) -> None:
        """Send a RUN container's stdout and stderr to the build output until the container's output ends."""
        import codecs

        from dockyard.api import stdcopy

        # One incremental decoder, because a UTF-8 character may be split across frames.
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        pending = b""
        while True:
            data = attachment.recv(65536)
            if not data:
                break
            frames, pending = stdcopy.parse(pending + data)
            for stream, payload in frames:
                if stream in (stdcopy.STDOUT, stdcopy.STDERR):
                    self.output(decoder.decode(payload))
        self.output(decoder.decode(b"", final=True))

    def _mount_points(self, container_id: str) -> set[str]:
        """Return the paths the runtime mounts over in the container, whose stubs stay out of the layer."""
        from pathlib import Path

        from dockyard.engine import rootfs

        bundle = rootfs.bundle_dir(Path(self.engine.config.run_root), container_id)
        try:
            config = json.loads((bundle / "config.json").read_text())
        except (OSError, ValueError):
            return set()
        return {os.path.normpath(entry.get("destination", "")) for entry in config.get("mounts") or []}

    # -- COPY and ADD ----------------------------------------------------------------------------

    def _copy(self, stage: Stage, instruction: Instruction) -> None:
        from dockyard.build import copying, remote
        from dockyard.engine.filesystem import lower_lookup

        keyword = instruction.keyword
        flags = instruction.flags
        words = self._expand_words(stage, instruction)
        if len(words) < 2:
            raise BuildError(f"Dockerfile line {instruction.line}: {keyword} requires at least two arguments")
        *sources, destination = words
        if keyword == "COPY" and any(remote.is_url(source) for source in sources):
            raise BuildError(f"Dockerfile line {instruction.line}: COPY cannot copy from a URL; use ADD to download a file")
        config = stage.image.container_config
        workdir = config.get("WorkingDir") or "/"
        target = posixpath.normpath(posixpath.join(workdir, destination))
        lowers = self.layering.lowers(stage.image)
        chmod = copying.parse_chmod(flags["chmod"], keyword) if "chmod" in flags else None
        owner = copying.resolve_owner(self._expand(stage, flags["chown"]), lowers, keyword) if "chown" in flags else None
        heredocs = {doc.name: doc for doc in instruction.heredocs}

        source_stage = self._expand(stage, flags["from"]) if "from" in flags else None
        with self._source_root(stage, source_stage) as (root_fd, ignore):
            collector = copying.Collector(root_fd, ignore, chmod, extract_archives=keyword == "ADD" and "from" not in flags,
                                          keyword=keyword)
            downloads: list[remote.Download] = []
            try:
                expanded: list[str] = []
                inline: list[tuple[str, bytes]] = []
                for source in sources:
                    if keyword == "ADD" and remote.is_url(source):
                        downloads.append(remote.download(source, self.engine.root / "tmp"))
                        continue
                    heredoc = re.fullmatch(r"<<-?[\"']?([A-Za-z0-9_]+)[\"']?", source)
                    if heredoc and heredoc.group(1) in heredocs:
                        doc = heredocs[heredoc.group(1)]
                        content = dockerfiles.expand_heredoc(doc.content, stage.variables(), self.escape) if doc.expand else doc.content
                        inline.append((doc.name, content.encode()))
                        continue
                    matches = copying.expand_sources(root_fd, source, ignore)
                    if not matches:
                        raise BuildError(f"{keyword} failed: no source files were specified: no file in the build context matches {source!r}")
                    expanded += matches
                count = len(expanded) + len(inline) + len(downloads)
                wildcard = any(any(char in source for char in "*?[") for source in sources)
                to_directory = destination.endswith("/") or destination in (".", "..") or count > 1 or wildcard
                if count > 1 and not destination.endswith("/"):
                    raise BuildError(
                        f"When using {keyword} with more than one source file, the destination must be a directory and end with a /"
                    )
                if not to_directory:
                    existing = lower_lookup(lowers, target.lstrip("/")) if lowers else None
                    to_directory = existing is not None and (existing.st_mode & 0o170000) == 0o040000
                for source in expanded:
                    collector.add_source(source, target, to_directory)
                for name, data in inline:
                    collector.add_data(posixpath.join(target, name) if to_directory else target, data)
                for fetched in downloads:
                    if to_directory and not fetched.name:
                        raise BuildError(f"Dockerfile line {instruction.line}: cannot determine a file name from the URL; "
                                         "give the destination a file name instead of a directory")
                    name = posixpath.join(target, fetched.name) if to_directory else target
                    file_mode = chmod if chmod is not None else remote.DOWNLOAD_MODE
                    collector.items.append(copying.Item(name, "file", str(fetched.path), file_mode, fetched.mtime))
                digest = collector.digest()
                kind = "file" if count == 1 and collector.items and collector.items[0].kind == "file" else "dir"
                created_by = f"{NOP}{keyword} {kind}:{digest.split(':', 1)[1]} in {target} "
                ids = f"{owner.uid}:{owner.gid}" if owner else ""
                mode = f"{chmod:o}" if chmod is not None else ""
                key_text = f"{keyword} --chown={ids} --chmod={mode} {target} {created_by}"
                mkdir_owner = owner or copying.Owner(0, 0)

                def make(image: ImageState) -> None:
                    self.layering.add(image, lambda out: copying.write_tar(
                        out, collector.items, owner, lambda relative: lower_lookup(lowers, relative) if lowers else None,
                        mkdir_owner))
                    image.with_history(created_by, empty_layer=False)

                self._step(stage, key_text, make, files_digest=digest)
            finally:
                collector.close()
                for fetched in downloads:
                    fetched.remove()

    @contextmanager
    def _source_root(self, stage: Stage, source: str | None) -> Iterator[tuple[int, Any]]:
        """Yield a directory descriptor of the files to copy from, and the ignore rules that apply to them."""
        if source is None:
            fd = os.open(self.context.directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            try:
                yield fd, self.context.ignore
            finally:
                os.close(fd)
            return
        image = self._from_image(source, stage)
        lowers = self.layering.lowers(image)
        with open_image_root(lowers, self.engine.root / "tmp") as fd:
            yield fd, None

    def _from_image(self, source: str, current: Stage) -> ImageState:
        wanted = source.lower()
        for stage in self.stages:
            if stage is current:
                break
            if stage.name == wanted or str(stage.index) == source:
                return stage.image
        if source.isdigit():
            raise BuildError(f"COPY --from={source}: there is no earlier stage with that index")
        return self._image(source)


@contextmanager
def open_image_root(lowers: list[str], tmp_dir: Any) -> Iterator[int]:
    """Yield a descriptor of an image's merged root: a private read-only overlay mount of its snapshots."""
    from dockyard.engine.filesystem import mount_overlay

    if not lowers:
        os.makedirs(tmp_dir, exist_ok=True)
        empty = tempfile.mkdtemp(prefix="build-empty-", dir=tmp_dir)
        fd = os.open(empty, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            yield fd
        finally:
            os.close(fd)
            shutil.rmtree(empty, ignore_errors=True)
        return
    if len(lowers) == 1:
        # A single snapshot is already the whole root; overlayfs wants two lower layers without an upper one.
        fd = os.open(lowers[0], os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    else:
        mount_fd = mount_overlay(lowers)
        try:
            fd = os.open(".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=mount_fd)
        finally:
            os.close(mount_fd)
    try:
        yield fd
    finally:
        os.close(fd)

