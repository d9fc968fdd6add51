"""``cp``, ``diff``, ``commit``, ``export``, ``top`` and ``stats`` through the ``dockyard`` CLI on real containers.

Every test runs detached busybox containers from the loopback registry's test
image in a private root; ``busybox_dockyard`` removes them afterwards.
"""

from __future__ import annotations

import io
import os
import tarfile

import pytest

from tests.support.containers import start_busybox

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(os.geteuid() != 0, reason="containers need root"),
]


# -- cp ---------------------------------------------------------------------------------------


def test_cp_file_into_and_out_of_container(busybox_dockyard, test_images, tmp_path):
    container_id = start_busybox(busybox_dockyard, test_images.busybox)
    source = tmp_path / "greeting.txt"
    source.write_text("hello from the host\n")
    busybox_dockyard.run("cp", str(source), f"{container_id}:/tmp/")
    inside = busybox_dockyard.run("exec", container_id, "cat", "/tmp/greeting.txt").stdout
    assert inside == "hello from the host\n"
    owner = busybox_dockyard.run("exec", container_id, "stat", "-c", "%u:%g", "/tmp/greeting.txt").stdout
    assert owner == "0:0\n"

    busybox_dockyard.run("exec", container_id, "sh", "-c", "echo made inside > /tmp/inside.txt")
    busybox_dockyard.run("cp", f"{container_id}:/tmp/inside.txt", str(tmp_path / "copied.txt"))
    assert (tmp_path / "copied.txt").read_text() == "made inside\n"


def test_cp_directory_rules(busybox_dockyard, test_images, tmp_path):
    container_id = start_busybox(busybox_dockyard, test_images.busybox)
    tree = tmp_path / "tree"
    (tree / "sub").mkdir(parents=True)
    (tree / "sub" / "leaf").write_text("leaf\n")
    busybox_dockyard.run("cp", str(tree), f"{container_id}:/tmp/new-name")
    busybox_dockyard.run("exec", container_id, "mkdir", "/tmp/existing")
    busybox_dockyard.run("cp", str(tree), f"{container_id}:/tmp/existing")
    busybox_dockyard.run("cp", f"{tree}/.", f"{container_id}:/tmp/existing")
    listing = busybox_dockyard.run("exec", container_id, "find", "/tmp/new-name", "/tmp/existing").stdout.split()
    assert "/tmp/new-name/sub/leaf" in listing
    assert "/tmp/existing/tree/sub/leaf" in listing
    assert "/tmp/existing/sub/leaf" in listing


def test_cp_symlink_resolves_inside_container(busybox_dockyard, test_images, tmp_path):
    container_id = start_busybox(busybox_dockyard, test_images.busybox)
    busybox_dockyard.run("exec", container_id, "sh", "-c",
                         "echo container-marker > /etc/marker && ln -s /etc /tmp/etc-link && ln -s ../../etc /tmp/up")
    out = tmp_path / "out"
    out.mkdir()
    busybox_dockyard.run("cp", f"{container_id}:/tmp/etc-link/marker", str(out / "via-link"))
    busybox_dockyard.run("cp", f"{container_id}:/tmp/up/passwd", str(out / "passwd"))
    assert (out / "via-link").read_text() == "container-marker\n"
    # The container's /etc/passwd (nobody, no host users), not the host's.
    assert (out / "passwd").read_bytes() == image_passwd()

    # Copying into the link writes the container's /etc, never the host's.
    source = tmp_path / "planted"
    source.write_text("planted\n")
    busybox_dockyard.run("cp", str(source), f"{container_id}:/tmp/etc-link/planted")
    assert not os.path.exists("/etc/planted")
    assert busybox_dockyard.run("exec", container_id, "cat", "/etc/planted").stdout == "planted\n"


def image_passwd() -> bytes:
    from tests.support.images import PASSWD

    return PASSWD


def test_cp_link_without_and_with_follow(busybox_dockyard, test_images, tmp_path):
    container_id = start_busybox(busybox_dockyard, test_images.busybox)
    busybox_dockyard.run("exec", container_id, "ln", "-s", "/etc/passwd", "/tmp/pw")
    busybox_dockyard.run("cp", f"{container_id}:/tmp/pw", str(tmp_path / "link"))
    busybox_dockyard.run("cp", "-L", f"{container_id}:/tmp/pw", str(tmp_path / "followed"))
    assert os.readlink(tmp_path / "link") == "/etc/passwd"
    assert (tmp_path / "followed").read_bytes() == image_passwd()


def test_cp_tar_streams(busybox_dockyard, test_images):
    container_id = start_busybox(busybox_dockyard, test_images.busybox)
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        data = b"from a tar stream\n"
        info = tarfile.TarInfo("streamed.txt")
        info.size = len(data)
        archive.addfile(info, io.BytesIO(data))
    busybox_dockyard.run("cp", "-", f"{container_id}:/tmp", input=buffer.getvalue())
    result = busybox_dockyard.run("cp", f"{container_id}:/tmp/streamed.txt", "-", input=b"")
    with tarfile.open(fileobj=io.BytesIO(result.stdout)) as archive:
        names = archive.getnames()
        content = archive.extractfile("streamed.txt").read()
    assert names == ["streamed.txt"]
    assert content == b"from a tar stream\n"


def test_cp_from_stopped_container(busybox_dockyard, test_images, tmp_path):
    container_id = busybox_dockyard.run("run", "-d", test_images.busybox, "sh", "-c",
                                        "echo stopped > /kept.txt").stdout.strip()
    busybox_dockyard.run("wait", container_id)
    busybox_dockyard.run("cp", f"{container_id}:/kept.txt", str(tmp_path / "kept.txt"))
    assert (tmp_path / "kept.txt").read_text() == "stopped\n"
    source = tmp_path / "late.txt"
    source.write_text("late\n")
    busybox_dockyard.run("cp", str(source), f"{container_id}:/late.txt")
    busybox_dockyard.run("cp", f"{container_id}:/late.txt", str(tmp_path / "late-back.txt"))
    assert (tmp_path / "late-back.txt").read_text() == "late\n"


def test_cp_missing_path_fails(busybox_dockyard, test_images, tmp_path):
    container_id = start_busybox(busybox_dockyard, test_images.busybox)
    result = busybox_dockyard.run("cp", f"{container_id}:/no/such/file", str(tmp_path / "x"), check=False)
    assert result.returncode == 1
    assert "Could not find the file /no/such/file" in result.stderr


# -- diff, commit, export ------------------------------------------------------------------


def test_diff_lists_added_changed_deleted(busybox_dockyard, test_images):
    container_id = start_busybox(busybox_dockyard, test_images.busybox)
    busybox_dockyard.run("exec", container_id, "sh", "-c",
                         "echo new > /new-file && echo more >> /etc/group && rm /etc/passwd && mkdir -p /made/deep")
    lines = busybox_dockyard.run("diff", container_id).stdout.splitlines()
    assert "A /new-file" in lines
    assert "C /etc" in lines
    assert "C /etc/group" in lines
    assert "D /etc/passwd" in lines
    assert "A /made" in lines
    assert "A /made/deep" in lines
    assert lines == sorted(lines, key=lambda line: line[2:])


def test_diff_hides_mount_points(busybox_dockyard, test_images):
    container_id = start_busybox(busybox_dockyard, test_images.busybox)
    lines = busybox_dockyard.run("diff", container_id).stdout.splitlines()
    paths = {line[2:] for line in lines}
    assert not paths & {"/etc/hosts", "/etc/hostname", "/etc/resolv.conf", "/proc", "/sys", "/dev"}


def test_commit_then_run_new_image(busybox_dockyard, test_images):
    container_id = start_busybox(busybox_dockyard, test_images.busybox)
    busybox_dockyard.run("exec", container_id, "sh", "-c", "echo committed > /committed.txt && rm /etc/group")
    image_id = busybox_dockyard.run(
        "commit", "-m", "a message", "-a", "Jane Doe", "-c", "ENV COMMITTED=yes", "-c", 'CMD ["cat", "/committed.txt"]',
        container_id, "committed:v1",
    ).stdout.strip()
    assert image_id.startswith("sha256:")
    assert busybox_dockyard.run("run", "--rm", "committed:v1").stdout == "committed\n"
    check = busybox_dockyard.run("run", "--rm", "committed:v1", "sh", "-c",
                                 'echo $COMMITTED; test -e /etc/group || echo group-gone').stdout
    assert check == "yes\ngroup-gone\n"
    history = busybox_dockyard.run("history", "--no-trunc", "--format", "{{.Comment}}", "committed:v1").stdout
    assert history.splitlines()[0] == "a message"


def test_commit_without_changes_adds_no_layer(busybox_dockyard, test_images):
    container_id = start_busybox(busybox_dockyard, test_images.busybox)
    busybox_dockyard.run("commit", container_id, "unchanged")
    layers = busybox_dockyard.run("image", "inspect", "--format", "{{len .RootFS.Layers}}", "unchanged").stdout
    base = busybox_dockyard.run("image", "inspect", "--format", "{{len .RootFS.Layers}}", test_images.busybox).stdout
    assert layers == base


def test_export_contains_files(busybox_dockyard, test_images, tmp_path):
    container_id = start_busybox(busybox_dockyard, test_images.busybox)
    busybox_dockyard.run("exec", container_id, "sh", "-c", "echo exported > /exported.txt && rm /etc/group")
    output = tmp_path / "export.tar"
    busybox_dockyard.run("export", "-o", str(output), container_id)
    with tarfile.open(output) as archive:
        names = set(archive.getnames())
        content = archive.extractfile("exported.txt").read()
    assert content == b"exported\n"
    assert "bin/busybox" in names
    assert "etc/passwd" in names
    assert "etc/group" not in names
    assert not any(name.startswith("proc/") for name in names)


# -- top and stats -----------------------------------------------------------------------------


def test_top_lists_container_processes(busybox_dockyard, test_images):
    container_id = start_busybox(busybox_dockyard, test_images.busybox)
    lines = busybox_dockyard.run("top", container_id).stdout.splitlines()
    assert lines[0].split() == ["UID", "PID", "PPID", "C", "STIME", "TTY", "TIME", "CMD"]
    assert any(line.split()[0] == "root" and line.endswith("sleep 300") for line in lines[1:])


def test_stats_no_stream_shows_memory_limit(busybox_dockyard, test_images):
    container_id = start_busybox(busybox_dockyard, test_images.busybox, "-m", "64m", "--name", "limited")
    lines = busybox_dockyard.run("stats", "--no-stream", container_id).stdout.splitlines()
    assert lines[0].split("  ")[0] == "CONTAINER ID"
    assert "MEM USAGE / LIMIT" in lines[0]
    row = lines[1]
    assert row.startswith(container_id[:12])
    assert "limited" in row
    assert "/ 64MiB" in row
    formatted = busybox_dockyard.run("stats", "--no-stream", "--no-trunc", "--format",
                                     "{{.ID}} {{.MemUsage}} {{.PIDs}}", container_id).stdout.split()
    assert formatted[0] == container_id
    assert formatted[3] == "64MiB"
    assert formatted[4] == "1"


def test_diff_and_commit_opaque_directory(busybox_dockyard, test_images):
    container_id = start_busybox(busybox_dockyard, test_images.busybox)
    before = busybox_dockyard.run("exec", container_id, "ls", "/usr/sbin").stdout.split()
    assert before
    busybox_dockyard.run("exec", container_id, "sh", "-c", "rm -rf /usr/sbin && mkdir /usr/sbin && echo x > /usr/sbin/only")
    lines = busybox_dockyard.run("diff", container_id).stdout.splitlines()
    assert "C /usr/sbin" in lines
    assert "A /usr/sbin/only" in lines
    for name in before:
        assert f"D /usr/sbin/{name}" in lines
    busybox_dockyard.run("commit", container_id, "opaque")
    after = busybox_dockyard.run("run", "--rm", "opaque", "ls", "/usr/sbin").stdout.split()
    assert after == ["only"]


def test_cp_tar_cannot_escape_container(busybox_dockyard, test_images):
    container_id = start_busybox(busybox_dockyard, test_images.busybox)
    through_link = io.BytesIO()
    with tarfile.open(fileobj=through_link, mode="w") as archive:
        link = tarfile.TarInfo("root-link")
        link.type = tarfile.SYMTYPE
        link.linkname = "/"
        archive.addfile(link)
        data = b"escaped?\n"
        info = tarfile.TarInfo("root-link/tmp/through-link.txt")
        info.size = len(data)
        archive.addfile(info, io.BytesIO(data))
    busybox_dockyard.run("cp", "-", f"{container_id}:/tmp", input=through_link.getvalue())
    # The symlink resolved inside the container: the file is in the container's /tmp, not the host's.
    assert not os.path.exists("/tmp/through-link.txt")
    assert busybox_dockyard.run("exec", container_id, "cat", "/tmp/through-link.txt").stdout == "escaped?\n"

    dot_dot = io.BytesIO()
    with tarfile.open(fileobj=dot_dot, mode="w") as archive:
        info = tarfile.TarInfo("../../../../tmp/dot-dot.txt")
        info.size = 0
        archive.addfile(info, io.BytesIO(b""))
    result = busybox_dockyard.run("cp", "-", f"{container_id}:/tmp", input=dot_dot.getvalue(), check=False)
    assert result.returncode == 1
    assert b"contains '..'" in result.stderr
    assert not os.path.exists("/tmp/dot-dot.txt")


def test_cp_directory_out_of_container(busybox_dockyard, test_images, tmp_path):
    container_id = start_busybox(busybox_dockyard, test_images.busybox)
    busybox_dockyard.run("exec", container_id, "sh", "-c",
                         "mkdir -p /data/sub && echo a > /data/a && echo b > /data/sub/b && ln /data/a /data/hard")
    busybox_dockyard.run("cp", f"{container_id}:/data", str(tmp_path / "copy"))
    assert (tmp_path / "copy" / "a").read_text() == "a\n"
    assert (tmp_path / "copy" / "sub" / "b").read_text() == "b\n"
    assert os.stat(tmp_path / "copy" / "hard").st_ino == os.stat(tmp_path / "copy" / "a").st_ino
    (tmp_path / "existing").mkdir()
    busybox_dockyard.run("cp", f"{container_id}:/data", str(tmp_path / "existing"))
    assert (tmp_path / "existing" / "data" / "sub" / "b").read_text() == "b\n"


def test_stats_all_running_containers(busybox_dockyard, test_images):
    first = start_busybox(busybox_dockyard, test_images.busybox)
    second = start_busybox(busybox_dockyard, test_images.busybox)
    ids = busybox_dockyard.run("stats", "--no-stream", "--format", "{{.ID}}").stdout.split()
    assert sorted(ids) == sorted([first[:12], second[:12]])
