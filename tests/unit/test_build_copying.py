"""COPY and ADD helpers: owners from /etc/passwd, the layer tar, archive members, and the build cache."""

from __future__ import annotations

import io
import os
import tarfile

import pytest

from dockyard.build import copying
from dockyard.build.cache import BuildCache, step_key
from dockyard.errors import BuildError


def write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


@pytest.fixture
def image_root(tmp_path):
    root = tmp_path / "image"
    write(root / "etc/passwd", "root:x:0:0::/root:/bin/sh\napp:x:1000:1001::/home/app:/bin/sh\n")
    write(root / "etc/group", "root:x:0:\nstaff:x:50:\napp:x:1001:\n")
    return [str(root)]


@pytest.mark.parametrize("spec, uid, gid", [
    ("app", 1000, 1001),
    ("app:staff", 1000, 50),
    ("1000", 1000, 1001),
    ("42", 42, 42),
    ("42:7", 42, 7),
    ("root:app", 0, 1001),
])
def test_resolve_owner(image_root, spec, uid, gid):
    assert copying.resolve_owner(spec, image_root, "COPY") == copying.Owner(uid, gid)


def test_resolve_owner_unknown_names(image_root):
    with pytest.raises(BuildError, match="unable to find user ghost"):
        copying.resolve_owner("ghost", image_root, "COPY")
    with pytest.raises(BuildError, match="unable to find group ghosts"):
        copying.resolve_owner("app:ghosts", image_root, "COPY")


def test_parse_chmod():
    assert copying.parse_chmod("755", "COPY") == 0o755
    with pytest.raises(BuildError, match="invalid mode"):
        copying.parse_chmod("rwx", "COPY")


def members(data: bytes) -> dict[str, tarfile.TarInfo]:
    with tarfile.open(fileobj=io.BytesIO(data)) as archive:
        return {member.name: member for member in archive.getmembers()}


def test_write_tar_parents_and_owner(tmp_path):
    source = tmp_path / "file.txt"
    source.write_text("content")
    items = [copying.Item("/new/dir/file.txt", "file", str(source), 0o640, 0)]
    existing = os.stat(tmp_path)

    def lower_stat(relative):
        return existing if relative == "new" else None

    out = io.BytesIO()
    copying.write_tar(out, items, copying.Owner(5, 6), lower_stat, copying.Owner(5, 6))
    found = members(out.getvalue())
    assert list(found) == ["new", "new/dir", "new/dir/file.txt"]
    assert found["new"].mode == existing.st_mode & 0o7777
    assert (found["new/dir"].mode, found["new/dir"].uid) == (0o755, 5)
    assert (found["new/dir/file.txt"].mode, found["new/dir/file.txt"].uid, found["new/dir/file.txt"].gid) == (0o640, 5, 6)


def archive_file(tmp_path, names):
    path = tmp_path / "archive"
    with tarfile.open(path, "w:gz") as archive:
        for name in names:
            info = tarfile.TarInfo(name)
            archive.addfile(info, io.BytesIO(b""))
    return path


def test_archive_members_moved_below_destination(tmp_path):
    path = archive_file(tmp_path, ["./a.txt", "/abs.txt", "sub/b.txt"])
    assert copying.is_archive(str(path))
    out = io.BytesIO()
    copying.write_tar(out, [copying.Item("/opt", "archive", str(path), 0, 0)], None, lambda relative: None, copying.Owner(0, 0))
    assert sorted(members(out.getvalue())) == ["opt", "opt/a.txt", "opt/abs.txt", "opt/sub/b.txt"]


def test_archive_member_with_dotdot_rejected(tmp_path):
    path = archive_file(tmp_path, ["../escape.txt"])
    with pytest.raises(BuildError, match="escapes the destination"):
        copying.write_tar(io.BytesIO(), [copying.Item("/opt", "archive", str(path), 0, 0)], None, lambda r: None,
                          copying.Owner(0, 0))


def test_plain_file_is_not_archive(tmp_path):
    path = tmp_path / "plain.gz"
    path.write_bytes(b"\x1f\x8b not really gzip")
    assert not copying.is_archive(str(path))


def test_cache_roundtrip(tmp_path):
    cache = BuildCache(tmp_path)
    key = step_key("sha256:parent", "RUN true")
    assert cache.get(key) is None
    cache.put(key, {"config": "{}", "layers": []})
    assert cache.get(key) == {"config": "{}", "layers": []}
    cache.remove(key)
    assert cache.get(key) is None


def test_cache_key_depends_on_every_part():
    base = step_key("sha256:a", "COPY x /", "sha256:files")
    assert step_key("sha256:b", "COPY x /", "sha256:files") != base
    assert step_key("sha256:a", "COPY y /", "sha256:files") != base
    assert step_key("sha256:a", "COPY x /", "sha256:other") != base
