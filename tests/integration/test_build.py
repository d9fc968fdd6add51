"""``dockyard build`` through the installed CLI, on the real kernel, from the busybox test image.

Every test builds in a private root (the ``builder`` fixture) with the busybox
image pulled from the loopback registry, in a context directory of its own.
At teardown every container is removed and no mount of the root may remain.
"""

from __future__ import annotations

import email.utils
import functools
import gzip
import http.server
import io
import json
import re
import tarfile
import threading
from pathlib import Path

import pytest

from tests.support.cli import Dockyard
from tests.support.containers import MONITOR_IDLE_SECONDS
from tests.support.images import ImageSet

pytestmark = pytest.mark.integration

BUILT = re.compile(r"^Successfully built ([0-9a-f]{12})$", re.MULTILINE)
RUNNING_IN = re.compile(r"^ ---> Running in ([0-9a-f]{12})$", re.MULTILINE)


def mounts_of_containers(output: str) -> list[str]:
    """Return the mount table lines that name a build container from the build output ``Running in`` lines."""
    ids = RUNNING_IN.findall(output)
    assert ids, output
    return [line for line in open("/proc/self/mountinfo") if any(short in line for short in ids)]


class Builder:
    """A dockyard root with busybox pulled and a context directory to write Dockerfiles into."""

    def __init__(self, dockyard: Dockyard, busybox: str, context: Path) -> None:
        self.dockyard = dockyard
        self.busybox = busybox
        self.context = context

    def write(self, name: str, content: str | bytes) -> Path:
        path = self.context / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content)
        return path

    def dockerfile(self, text: str) -> None:
        self.write("Dockerfile", text.replace("BUSYBOX", self.busybox))

    def build(self, *flags: str, check: bool = True):
        return self.dockyard.run("build", *flags, str(self.context), check=check)

    def build_id(self, *flags: str) -> str:
        result = self.build(*flags)
        match = BUILT.search(result.stdout)
        assert match, result.stdout
        return match.group(1)

    def run(self, image: str, *command: str) -> str:
        return self.dockyard.run("run", "--rm", image, *command).stdout

    def config(self, image: str) -> dict:
        return json.loads(self.dockyard.run("image", "inspect", image).stdout)[0]["Config"]


@pytest.fixture
def builder(dockyard: Dockyard, test_images: ImageSet, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("DOCKYARD_MONITOR_IDLE_TIMEOUT", MONITOR_IDLE_SECONDS)
    dockyard.run("pull", "-q", test_images.busybox)
    context = tmp_path / "context"
    context.mkdir()
    yield Builder(dockyard, test_images.busybox, context)
    leftover = dockyard.run("ps", "-a", "-q", "--no-trunc", check=False).stdout.split()
    if leftover:
        dockyard.run("rm", "-f", *leftover, check=False)
    from tests.integration.test_container_cli import stop_monitor

    stop_monitor(dockyard)
    mounts = [line for line in open("/proc/self/mountinfo") if str(dockyard.root) in line]
    assert mounts == [], f"mounts left behind: {mounts}"


# -- instructions ---------------------------------------------------------------------------------


def test_run_and_cmd_image_runs(builder):
    builder.dockerfile('FROM BUSYBOX\nRUN echo built > /built.txt && echo visible-output\nCMD ["cat", "/built.txt"]\n')
    result = builder.build("-t", "demo:1")
    assert "Step 1/3 : FROM" in result.stdout
    assert "Step 2/3 : RUN echo built" in result.stdout
    assert "visible-output" in result.stdout
    assert "Successfully tagged demo:1" in result.stdout
    assert mounts_of_containers(result.stdout) == []
    assert builder.run("demo:1") == "built\n"


def test_history_entries(builder):
    builder.dockerfile('FROM BUSYBOX\nRUN touch /x\nCMD ["sh"]\n')
    builder.build("-t", "hist")
    history = builder.dockyard.run("history", "--no-trunc", "--format", "{{.CreatedBy}}", "hist").stdout.splitlines()
    assert history[0] == '/bin/sh -c #(nop)  CMD ["sh"]'
    assert history[1] == "/bin/sh -c touch /x"


def test_env_workdir_user_expose_label_entrypoint(builder):
    builder.dockerfile(
        "FROM BUSYBOX\n"
        "ENV GREETING=hello NAME=\"big world\"\n"
        "WORKDIR /srv\n"
        "WORKDIR app\n"
        "USER nobody\n"
        "EXPOSE 8080 53/udp\n"
        "LABEL org.example.name=\"$NAME\" plain=yes\n"
        'ENTRYPOINT ["echo"]\n'
        'CMD ["$GREETING"]\n'
        "STOPSIGNAL SIGINT\n"
        'VOLUME ["/data"]\n'
    )
    builder.build("-t", "meta")
    config = builder.config("meta")
    assert "GREETING=hello" in config["Env"]
    assert "NAME=big world" in config["Env"]
    assert config["WorkingDir"] == "/srv/app"
    assert config["User"] == "nobody"
    assert config["ExposedPorts"] == {"8080/tcp": {}, "53/udp": {}}
    assert config["Labels"] == {"org.example.name": "big world", "plain": "yes"}
    assert config["Entrypoint"] == ["echo"]
    assert config["Cmd"] == ["$GREETING"]
    assert config["StopSignal"] == "SIGINT"
    assert config["Volumes"] == {"/data": {}}


def test_copy_files_and_directories(builder):
    builder.write("one.txt", "one\n")
    builder.write("tree/a.txt", "a\n")
    builder.write("tree/sub/b.txt", "b\n")
    builder.write("glob1.conf", "g1\n")
    builder.write("glob2.conf", "g2\n")
    builder.dockerfile(
        "FROM BUSYBOX\n"
        "COPY one.txt /renamed.txt\n"
        "COPY one.txt /dir/\n"
        "COPY tree /copied\n"
        "COPY *.conf /confs/\n"
        "COPY --chmod=700 one.txt /private.txt\n"
        "WORKDIR /work\n"
        "COPY one.txt relative.txt\n"
    )
    builder.build("-t", "copies")
    listing = builder.run("copies", "sh", "-c",
                          "cat /renamed.txt /dir/one.txt /copied/a.txt /copied/sub/b.txt /confs/glob1.conf "
                          "/confs/glob2.conf /work/relative.txt; stat -c %a /private.txt")
    assert listing == "one\none\na\nb\ng1\ng2\none\n700\n"


def test_copy_chown_names_from_image(builder):
    builder.write("owned.txt", "x\n")
    builder.dockerfile("FROM BUSYBOX\nCOPY --chown=nobody:nogroup owned.txt /owned.txt\nCOPY --chown=123:456 owned.txt /numeric.txt\n")
    builder.build("-t", "owned")
    assert builder.run("owned", "stat", "-c", "%u:%g", "/owned.txt", "/numeric.txt") == "65534:65534\n123:456\n"


def test_copy_heredoc(builder):
    builder.dockerfile(
        "FROM BUSYBOX\nARG WHO=heredoc\n"
        "COPY <<EOF /greeting.txt\nhello from a \"$WHO\"\nEOF\n"
        "COPY <<'EOF' /literal.txt\nkept $WHO\nEOF\n"
        "RUN <<EOT\necho run-heredoc > /ran.txt\nEOT\n"
    )
    builder.build("-t", "heredoc")
    output = builder.run("heredoc", "cat", "/greeting.txt", "/literal.txt", "/ran.txt")
    assert output == 'hello from a "heredoc"\nkept $WHO\nrun-heredoc\n'


def test_user_workdir_run_creates_owned_file(builder):
    builder.dockerfile("FROM BUSYBOX\nUSER nobody\nWORKDIR /home/nobody/work\nRUN touch x\n")
    builder.build("-t", "userfile")
    assert builder.run("userfile", "stat", "-c", "%U %u", "/home/nobody/work/x") == "nobody 65534\n"


# -- ARG -------------------------------------------------------------------------------------------


def test_arg_before_from_scopes(builder):
    builder.dockerfile(
        "ARG BASE=BUSYBOX\n"
        "ARG ONLY_FROM=meta\n"
        "FROM $BASE\n"
        "RUN echo \"only_from=[$ONLY_FROM]\" > /scope.txt\n"
        "ARG ONLY_FROM\n"
        "RUN echo \"redeclared=[$ONLY_FROM]\" >> /scope.txt\n"
    )
    builder.build("-t", "argscope")
    assert builder.run("argscope", "cat", "/scope.txt") == "only_from=[]\nredeclared=[meta]\n"


def test_env_from_arg_and_build_arg(builder):
    builder.dockerfile("FROM BUSYBOX\nARG VERSION=1.0\nENV APP_VERSION=v$VERSION\n")
    builder.build("-t", "argenv", "--build-arg", "VERSION=2.5")
    assert "APP_VERSION=v2.5" in builder.config("argenv")["Env"]
    assert not any(entry.startswith("VERSION=") for entry in builder.config("argenv")["Env"])


def test_unused_build_arg_warns(builder):
    builder.dockerfile("FROM BUSYBOX\n")
    result = builder.build("--build-arg", "NOBODY_USES=1")
    assert "[Warning] One or more build-args [NOBODY_USES] were not consumed" in result.stdout


# -- stages ----------------------------------------------------------------------------------------


def test_copy_from_earlier_stage_and_target(builder):
    builder.dockerfile(
        "FROM BUSYBOX AS compile\n"
        "RUN mkdir /out && echo artifact > /out/app\n"
        "FROM BUSYBOX AS tests\n"
        "RUN echo tests > /tests.txt\n"
        "FROM scratch\n"
        "COPY --from=compile /out/app /app\n"
        "COPY --from=compile /bin/busybox /bin/busybox\n"
    )
    builder.build("-t", "final")
    assert builder.run("final", "/bin/busybox", "cat", "/app") == "artifact\n"
    builder.build("-t", "only-tests", "--target", "tests")
    assert builder.run("only-tests", "cat", "/tests.txt") == "tests\n"


def test_unknown_target_fails(builder):
    builder.dockerfile("FROM BUSYBOX AS one\n")
    result = builder.build("--target", "two", check=False)
    assert result.returncode == 1
    assert "failed to reach build target two" in result.stderr


# -- cache -----------------------------------------------------------------------------------------


def test_rebuild_cached_and_edit_reruns(builder):
    builder.write("first.txt", "1\n")
    builder.write("second.txt", "2\n")
    builder.dockerfile(
        "FROM BUSYBOX\n"
        "COPY first.txt /first.txt\n"
        "RUN echo ran-after-first\n"
        "COPY second.txt /second.txt\n"
        "RUN echo ran-after-second\n"
    )
    first = builder.build("-t", "cached")
    assert "\nran-after-first\n" in first.stdout
    first_id = BUILT.search(first.stdout).group(1)

    again = builder.build("-t", "cached")
    assert again.stdout.count("---> Using cache") == 4
    assert "\nran-after" not in again.stdout
    assert BUILT.search(again.stdout).group(1) == first_id

    builder.write("second.txt", "changed\n")
    edited = builder.build("-t", "cached")
    assert edited.stdout.count("---> Using cache") == 2
    assert "\nran-after-first\n" not in edited.stdout
    assert "\nran-after-second\n" in edited.stdout
    assert builder.run("cached", "cat", "/second.txt") == "changed\n"

    no_cache = builder.build("--no-cache", "-t", "cached")
    assert "Using cache" not in no_cache.stdout


# -- context ---------------------------------------------------------------------------------------


def test_dockerignore_rules(builder):
    builder.write("notes.md", "excluded\n")
    builder.write("README.md", "kept\n")
    builder.write("docs/guide.md", "excluded too\n")
    builder.write("src/tmp/scratch.txt", "excluded\n")
    builder.write("tmp/top.txt", "excluded\n")
    builder.write("src/main.txt", "kept\n")
    builder.write(".dockerignore", "# comment\n*.md\n!README.md\n**/tmp\ndocs/*.md\n")
    builder.dockerfile("FROM BUSYBOX\nCOPY . /ctx/\n")
    builder.build("-t", "ignored")
    files = builder.run("ignored", "find", "/ctx", "-type", "f").split()
    assert sorted(files) == ["/ctx/.dockerignore", "/ctx/Dockerfile", "/ctx/README.md", "/ctx/src/main.txt"]


def test_context_tar_on_stdin(builder):
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        for name, data in (("Dockerfile", f"FROM {builder.busybox}\nCOPY hello.txt /\n".encode()), ("hello.txt", b"from stdin\n")):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    builder.dockyard.run("build", "-t", "stdin", "-", input=buffer.getvalue())
    assert builder.run("stdin", "cat", "/hello.txt") == "from stdin\n"


def _tar_gz(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return gzip.compress(buffer.getvalue())


def test_add_extracts_local_archives(builder):
    builder.write("bundle.tar.gz", _tar_gz({"pkg/one.txt": b"one\n"}))
    builder.write("noextension", _tar_gz({"two.txt": b"two\n"}))
    builder.write("plain.txt", "not an archive\n")
    builder.dockerfile("FROM BUSYBOX\nADD bundle.tar.gz /opt/\nADD noextension /other\nADD plain.txt /plain.txt\n")
    builder.build("-t", "added")
    assert builder.run("added", "cat", "/opt/pkg/one.txt", "/other/two.txt", "/plain.txt") == "one\ntwo\nnot an archive\n"


def test_failing_run_leaves_nothing(builder):
    images_before = builder.dockyard.image_ids()
    builder.dockerfile("FROM BUSYBOX\nRUN echo half > /half.txt\nRUN false\n")
    result = builder.build("-t", "broken", check=False)
    assert result.returncode == 1
    assert "The command '/bin/sh -c false' returned a non-zero code: 1" in result.stderr
    assert builder.dockyard.run("ps", "-a", "-q").stdout == ""
    assert builder.dockyard.image_ids() == images_before
    assert mounts_of_containers(result.stdout) == []
    mounts = [line for line in open("/proc/self/mountinfo") if str(builder.dockyard.root) in line]
    assert mounts == []


def test_quiet_and_iidfile(builder, tmp_path):
    builder.dockerfile("FROM BUSYBOX\nLABEL quiet=yes\n")
    iidfile = tmp_path / "iid"
    result = builder.build("-q", "--iidfile", str(iidfile), "--label", "extra=1")
    image_id = result.stdout.strip()
    assert re.fullmatch(r"sha256:[0-9a-f]{64}", image_id)
    assert iidfile.read_text() == image_id
    assert builder.config(image_id)["Labels"] == {"quiet": "yes", "extra": "1"}


def test_dockerfile_on_stdin_and_other_path(builder, tmp_path):
    result = builder.dockyard.run("build", "-t", "piped", "-", input=f"FROM {builder.busybox}\nRUN echo piped > /p.txt\n")
    assert "Successfully tagged piped:latest" in result.stdout
    assert builder.run("piped", "cat", "/p.txt") == "piped\n"

    elsewhere = tmp_path / "Dockerfile.other"
    elsewhere.write_text(f"FROM {builder.busybox}\nCOPY data.txt /\n")
    builder.write("data.txt", "from the context\n")
    builder.dockyard.run("build", "-f", str(elsewhere), "-t", "other", str(builder.context))
    assert builder.run("other", "cat", "/data.txt") == "from the context\n"


def test_copy_missing_or_ignored_file_fails(builder):
    builder.write("secret.key", "x\n")
    builder.write(".dockerignore", "*.key\n")
    builder.dockerfile("FROM BUSYBOX\nCOPY secret.key /\n")
    result = builder.build(check=False)
    assert result.returncode == 1
    assert "secret.key" in result.stderr
    assert "excluded by .dockerignore" in result.stderr

    builder.dockerfile("FROM BUSYBOX\nCOPY missing.txt /\n")
    result = builder.build(check=False)
    assert result.returncode == 1
    assert "missing.txt" in result.stderr


def test_shell_healthcheck_onbuild_entrypoint(builder):
    builder.dockerfile(
        "FROM BUSYBOX\n"
        'CMD ["from-base"]\n'
        'SHELL ["/bin/sh", "-xc"]\n'
        "RUN echo traced\n"
        "HEALTHCHECK --interval=5s --retries=2 CMD wget -q localhost\n"
        "ONBUILD RUN echo triggered > /onbuild.txt\n"
    )
    result = builder.build("-t", "parent")
    assert "+ echo traced" in result.stdout
    config = builder.config("parent")
    assert config["Shell"] == ["/bin/sh", "-xc"]
    assert config["Healthcheck"] == {"Test": ["CMD-SHELL", "wget -q localhost"], "Interval": 5_000_000_000, "Retries": 2}
    assert config["OnBuild"] == ["RUN echo triggered > /onbuild.txt"]

    builder.dockerfile('FROM parent\nENTRYPOINT ["cat"]\n')
    builder.build("-t", "child")
    child = builder.config("child")
    assert child["Entrypoint"] == ["cat"]
    assert child.get("Cmd") is None
    assert not child.get("OnBuild")
    assert builder.dockyard.run("run", "--rm", "--entrypoint", "cat", "child", "/onbuild.txt").stdout == "triggered\n"


@pytest.mark.parametrize("dockerfile, message", [
    ("FROM BUSYBOX\nRUN --mount=type=cache,target=/c true\n", "RUN --mount is not supported"),
    ("ARG BASE\nFROM $BASE\n", "names no image after substitution"),
    ("RUN true\nFROM BUSYBOX\n", "only ARG may come before FROM"),
    ("FROM BUSYBOX\nADD git@127.0.0.1:repo.git /\n", "only http and https URLs can be downloaded"),
    ("FROM BUSYBOX\nCOPY http://127.0.0.1:1/file /\n", "COPY cannot copy from a URL"),
    ("FROM BUSYBOX\nCOPY a b c\n", "must be a directory and end with a /"),
])
def test_invalid_dockerfiles_rejected(builder, dockerfile, message):
    builder.write("a", "a\n")
    builder.write("b", "b\n")
    builder.dockerfile(dockerfile)
    result = builder.build(check=False)
    assert result.returncode == 1
    assert message in result.stderr


def test_pull_flag_and_rmi_after_build(builder):
    builder.dockerfile("FROM BUSYBOX\nRUN echo layer > /layer.txt\n")
    result = builder.build("--pull", "-t", "pulled")
    assert "Successfully tagged pulled:latest" in result.stdout
    snapshots_before = builder.dockyard.snapshots()
    builder.dockyard.run("rmi", "pulled")
    assert len(builder.dockyard.snapshots()) == len(snapshots_before) - 1


# -- ADD of a URL, FROM --platform, STOPSIGNAL, output lines ----------------------------------------


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def file_server(tmp_path: Path):
    """Serve a directory over HTTP on 127.0.0.1; yields (directory, base URL)."""
    directory = tmp_path / "served"
    directory.mkdir()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(QuietHandler, directory=str(directory)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield directory, f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def test_add_url_downloads_without_extracting(builder, file_server):
    served, base = file_server
    (served / "notes.txt").write_text("downloaded\n")
    archive = _tar_gz({"inside.txt": b"must stay packed\n"})
    (served / "bundle.tar.gz").write_bytes(archive)
    builder.dockerfile(
        f"FROM BUSYBOX\nADD {base}/notes.txt /srv/\nADD {base}/bundle.tar.gz /srv/bundle.tar.gz\n"
        f"ADD --chmod=755 {base}/notes.txt /srv/renamed\n"
    )
    result = builder.build("-t", "fetched")
    assert "Successfully tagged fetched:latest" in result.stdout
    listing = builder.run("fetched", "stat", "-c", "%n %a %s", "/srv/notes.txt", "/srv/bundle.tar.gz", "/srv/renamed")
    assert listing.splitlines() == [
        "/srv/notes.txt 600 11",
        f"/srv/bundle.tar.gz 600 {len(archive)}",
        "/srv/renamed 755 11",
    ]
    assert builder.run("fetched", "cat", "/srv/notes.txt") == "downloaded\n"
    assert builder.run("fetched", "ls", "/srv") == "bundle.tar.gz\nnotes.txt\nrenamed\n"

    # The cache follows the downloaded content: the same file is a hit, a changed one a miss.
    assert builder.build("-t", "fetched").stdout.count(" ---> Using cache") == 3
    (served / "bundle.tar.gz").write_bytes(_tar_gz({"inside.txt": b"a new version\n"}))
    assert builder.build("-t", "fetched").stdout.count(" ---> Using cache") == 1
    (served / "notes.txt").write_text("changed on the server\n")
    assert builder.build("-t", "fetched").stdout.count(" ---> Using cache") == 0
    assert builder.run("fetched", "cat", "/srv/notes.txt") == "changed on the server\n"


def test_add_url_mtime_and_missing_file(builder, file_server):
    served, base = file_server
    (served / "dated.txt").write_text("old\n")
    builder.dockerfile(f"FROM BUSYBOX\nADD {base}/dated.txt /dated.txt\n")
    builder.build("-t", "dated")
    mtime = int(builder.run("dated", "stat", "-c", "%Y", "/dated.txt"))
    served_mtime = int((served / "dated.txt").stat().st_mtime)
    assert mtime == served_mtime, email.utils.formatdate(served_mtime)

    builder.dockerfile(f"FROM BUSYBOX\nADD {base}/missing.txt /\n")
    result = builder.build(check=False)
    assert result.returncode == 1
    assert f"failed to download {base}/missing.txt: HTTP status 404" in result.stderr
    assert not any(builder.dockyard.root.joinpath("tmp").glob("build-download-*"))


def test_from_platform_pulls_foreign_image(builder, test_images):
    builder.write("data.txt", "copied\n")
    builder.dockerfile(
        f"FROM --platform=linux/arm64 {test_images.multiarch}\nCOPY data.txt /data.txt\n"
        "ENV ARCH=arm64\nLABEL stage=foreign\n"
    )
    builder.build("-t", "foreign")
    inspect = json.loads(builder.dockyard.run("image", "inspect", "foreign").stdout)[0]
    assert inspect["Architecture"] == "arm64"
    assert inspect["Config"]["Env"][-1] == "ARCH=arm64"
    assert inspect["Config"]["Labels"] == {"stage": "foreign"}
    # The base layer is the arm64 one, and the copied file is on top of it.
    assert len(inspect["RootFS"]["Layers"]) == 2

    builder.dockerfile(f"FROM --platform=linux/arm/v7 {test_images.multiarch}\nRUN true\n")
    result = builder.build(check=False)
    assert result.returncode == 1
    assert "RUN cannot run in an image for linux/arm/v7" in result.stderr


def test_from_platform_copies_from_foreign_stage(builder, test_images):
    builder.dockerfile(
        f"FROM --platform=linux/arm/v7 {test_images.multiarch} AS arm\n"
        "FROM BUSYBOX\nCOPY --from=arm /platform.txt /from-arm.txt\n"
    )
    builder.build("-t", "mixed")
    assert builder.run("mixed", "cat", "/from-arm.txt") == "linux/arm/v7\n"


def test_stopsignal_and_healthcheck_none(builder):
    builder.dockerfile('FROM BUSYBOX\nSTOPSIGNAL SIGTERM\nHEALTHCHECK NONE\nSHELL ["/bin/ash", "-c"]\n')
    builder.build("-t", "signals")
    config = builder.config("signals")
    assert config["StopSignal"] == "SIGTERM"
    assert config["Healthcheck"] == {"Test": ["NONE"]}
    assert config["Shell"] == ["/bin/ash", "-c"]


def test_onbuild_triggers_run_in_child(builder):
    builder.write("seed.txt", "seed\n")
    builder.dockerfile("FROM BUSYBOX\nONBUILD COPY seed.txt /seed.txt\nONBUILD RUN cat /seed.txt > /copy.txt\n")
    builder.build("-t", "onbuild-parent")
    builder.dockerfile("FROM onbuild-parent\nRUN cat /copy.txt\n")
    result = builder.build("-t", "onbuild-child")
    assert "# Executing 2 build triggers" in result.stdout
    assert builder.run("onbuild-child", "cat", "/copy.txt") == "seed\n"
    # Triggers run once: a grandchild of the child inherits none.
    assert not builder.config("onbuild-child").get("OnBuild")


def test_output_lines_and_image_build_alias(builder):
    builder.write("payload.bin", b"x" * 3000)
    builder.dockerfile("FROM BUSYBOX\nCOPY payload.bin /\n")
    result = builder.dockyard.run("image", "build", "-t", "alias", str(builder.context))
    first = result.stdout.splitlines()[0]
    # A 3000-byte file and the Dockerfile: headers, padded data and the end marker.
    assert re.fullmatch(r"Sending build context to dockyard  \d\.\d+kB", first), first
    assert "Successfully tagged alias:latest" in result.stdout

    builder.dockerfile("FROM BUSYBOX\nRUN exit 3\n")
    failed = builder.build(check=False)
    assert failed.returncode == 1
    assert failed.stderr.splitlines()[-1] == "The command '/bin/sh -c exit 3' returned a non-zero code: 3"
