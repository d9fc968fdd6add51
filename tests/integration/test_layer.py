"""Layer application on the real kernel: overlayfs format, metadata, and escapes."""

from __future__ import annotations

import gzip
import hashlib
import io
import itertools
import os
import stat
import tarfile
from pathlib import Path

import pytest
import zstandard
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dockyard.errors import ImageError, InvalidManifest, UnsafeLayer
from dockyard.image import layer, mediatypes
from tests.support.layers import (
    MTIME,
    blockdev,
    chardev,
    directory,
    fifo,
    file,
    hardlink,
    is_opaque,
    is_whiteout,
    opaque,
    symlink,
    tar_bytes,
    tree_state,
    unpack,
    whiteout,
)

pytestmark = pytest.mark.integration

# security.capability for cap_net_bind_service=ep (VFS_CAP_REVISION_2, 20 bytes).
CAP_NET_BIND_SERVICE = bytes.fromhex("0100000200040000000000000000000000000000")


# Decompression and IDs ----------------------------------------------------------


def test_decompressed_sniffs_each_format():
    plain = tar_bytes([file("a", b"x")])
    compressed = {
        "plain": plain,
        "gzip": gzip.compress(plain),
        "zstd": zstandard.ZstdCompressor().compress(plain),
    }
    for kind, data in compressed.items():
        for media_type in (None, mediatypes.OCI_LAYER_GZIP, mediatypes.OCI_LAYER_TAR, mediatypes.OCI_LAYER_ZSTD):
            out = layer.decompressed(io.BytesIO(data), media_type).read()
            assert out == plain, (kind, media_type)


def test_decompressed_rejects_unknown_media_type():
    with pytest.raises(InvalidManifest):
        layer.decompressed(io.BytesIO(b""), "application/vnd.oci.image.config.v1+json")


def test_chain_ids_follow_oci_formula():
    a = "sha256:" + "a" * 64
    b = "sha256:" + "b" * 64
    c = "sha256:" + "c" * 64
    ab = "sha256:" + hashlib.sha256(f"{a} {b}".encode()).hexdigest()
    abc = "sha256:" + hashlib.sha256(f"{ab} {c}".encode()).hexdigest()
    assert layer.chain_ids([a, b, c]) == [a, ab, abc]
    assert layer.chain_ids([]) == []


def test_diff_id_covers_bytes_after_end_marker(tmp_path):
    data = tar_bytes([file("a", b"hello")], trailing=b"\0" * 8192)
    target = tmp_path / "s"
    target.mkdir()
    result = layer.apply(io.BytesIO(data), target, "sha256:x")
    assert result.diff_id == "sha256:" + hashlib.sha256(data).hexdigest()
    assert result.size == 5


def test_zstd_layer_unpacks_through_decompressed(tmp_path):
    plain = tar_bytes([file("etc/hostname", b"box\n")])
    target = tmp_path / "s"
    target.mkdir()
    stream = layer.decompressed(io.BytesIO(zstandard.ZstdCompressor().compress(plain)), mediatypes.OCI_LAYER_ZSTD)
    result = layer.apply(stream, target, "sha256:x")
    assert result.diff_id == "sha256:" + hashlib.sha256(plain).hexdigest()
    assert (target / "etc/hostname").read_bytes() == b"box\n"


def test_empty_stream_is_empty_layer(tmp_path):
    for data in (b"", b"\0" * 1024):
        target = tmp_path / f"s{len(data)}"
        target.mkdir()
        result = layer.apply(io.BytesIO(data), target, "sha256:x")
        assert result.diff_id == "sha256:" + hashlib.sha256(data).hexdigest()
        assert os.listdir(target) == []


def test_truncated_tar_raises_and_removes_target(tmp_path):
    data = tar_bytes([file("a", b"x" * 5000)])[:2048]
    target = tmp_path / "s"
    target.mkdir()
    with pytest.raises(ImageError, match="sha256:broken"):
        layer.apply(io.BytesIO(data), target, "sha256:broken")
    assert not target.exists()


# Entries and metadata -------------------------------------------------------------


def test_metadata_of_each_member_type(tmp_path):
    target = tmp_path / "s"
    unpack([
        directory("bin/", mode=0o750, uid=7, gid=8, mtime=1000),
        file("bin/ping", b"elf", mode=0o4755, uid=0, gid=0, mtime=2000,
             xattrs={"security.capability": CAP_NET_BIND_SERVICE}),
        file("bin/tool", b"t", mode=0o2711, uid=1234, gid=5678),
        symlink("bin/sh", "/bin/busybox", uid=3, gid=4),
        chardev("dev/null", 1, 3),
        blockdev("dev/loop9", 7, 9),
        fifo("run/pipe", mode=0o620),
        directory("tmp/", mode=0o1777),
    ], target)

    bin_st = os.lstat(target / "bin")
    assert stat.S_IMODE(bin_st.st_mode) == 0o750
    assert (bin_st.st_uid, bin_st.st_gid) == (7, 8)
    # Directory times are set after the directory's contents are written.
    assert bin_st.st_mtime == 1000

    ping = os.lstat(target / "bin/ping")
    assert stat.S_IMODE(ping.st_mode) == 0o4755
    assert ping.st_mtime == 2000
    assert os.getxattr(target / "bin/ping", "security.capability") == CAP_NET_BIND_SERVICE

    tool = os.lstat(target / "bin/tool")
    assert stat.S_IMODE(tool.st_mode) == 0o2711
    assert (tool.st_uid, tool.st_gid) == (1234, 5678)

    assert os.readlink(target / "bin/sh") == "/bin/busybox"
    sh = os.lstat(target / "bin/sh")
    assert (sh.st_uid, sh.st_gid) == (3, 4)
    assert sh.st_mtime == MTIME

    null = os.lstat(target / "dev/null")
    assert stat.S_ISCHR(null.st_mode)
    assert (os.major(null.st_rdev), os.minor(null.st_rdev)) == (1, 3)
    assert stat.S_IMODE(null.st_mode) == 0o666
    loop = os.lstat(target / "dev/loop9")
    assert stat.S_ISBLK(loop.st_mode)
    assert (os.major(loop.st_rdev), os.minor(loop.st_rdev)) == (7, 9)
    pipe = os.lstat(target / "run/pipe")
    assert stat.S_ISFIFO(pipe.st_mode)
    assert stat.S_IMODE(pipe.st_mode) == 0o620
    assert stat.S_IMODE(os.lstat(target / "tmp").st_mode) == 0o1777


@pytest.mark.parametrize("root_name", ["/", "./", "."])
def test_root_member_sets_snapshot_root(tmp_path, root_name):
    target = tmp_path / "s"
    unpack([directory(root_name, mode=0o711, uid=11, gid=12, mtime=3000), file("a", b"1")], target)
    st = os.lstat(target)
    assert stat.S_IMODE(st.st_mode) == 0o711
    assert (st.st_uid, st.st_gid) == (11, 12)
    assert st.st_mtime == 3000
    assert (target / "a").read_bytes() == b"1"


def test_root_member_of_other_type_rejected(tmp_path):
    target = tmp_path / "s"
    with pytest.raises(UnsafeLayer):
        unpack([file("./", b"")], target)
    assert not target.exists()


def test_absolute_names_land_inside(tmp_path):
    target = tmp_path / "s"
    unpack([file("/etc/motd", b"hi"), directory("/opt/"), file("//opt/../opt/x", b"y")], target)
    assert (target / "etc/motd").read_bytes() == b"hi"
    assert (target / "opt/x").read_bytes() == b"y"


def test_implied_parent_copies_lower_metadata(tmp_path):
    lower = tmp_path / "l1"
    unpack([directory("srv/", mode=0o701, uid=33, gid=34, mtime=4000)], lower)
    upper = tmp_path / "l2"
    unpack([file("srv/new", b"n"), file("other/x", b"x")], upper, [lower])
    srv = os.lstat(upper / "srv")
    assert stat.S_IMODE(srv.st_mode) == 0o701
    assert (srv.st_uid, srv.st_gid) == (33, 34)
    assert srv.st_mtime == 4000
    assert stat.S_IMODE(os.lstat(upper / "other").st_mode) == 0o755


# Whiteouts and opaque directories -----------------------------------------------------


def test_whiteout_alone_is_char_device(tmp_path):
    target = tmp_path / "s"
    unpack([whiteout("etc/gone"), whiteout("top")], target)
    assert is_whiteout(target / "etc/gone")
    assert is_whiteout(target / "top")
    assert not (target / "etc/.wh.gone").exists()


@pytest.mark.parametrize("order", list(itertools.permutations(range(3))))
def test_whiteout_and_same_layer_directory_any_order(tmp_path, order):
    members = [whiteout("x"), directory("x/", mode=0o700), file("x/new", b"n")]
    target = tmp_path / "s"
    unpack([members[i] for i in order], target)
    assert (target / "x").is_dir()
    assert is_opaque(target / "x")
    assert (target / "x/new").read_bytes() == b"n"
    assert stat.S_IMODE(os.lstat(target / "x").st_mode) == 0o700


@pytest.mark.parametrize("order", list(itertools.permutations(range(2))))
def test_whiteout_and_same_layer_file_any_order(tmp_path, order):
    members = [whiteout("f"), file("f", b"kept")]
    target = tmp_path / "s"
    unpack([members[i] for i in order], target)
    assert (target / "f").read_bytes() == b"kept"


@pytest.mark.parametrize("order", list(itertools.permutations(range(3))))
def test_opaque_marker_any_order(tmp_path, order):
    members = [opaque("d"), directory("d/", mode=0o751), file("d/a", b"a")]
    target = tmp_path / "s"
    unpack([members[i] for i in order], target)
    assert is_opaque(target / "d")
    assert (target / "d/a").read_bytes() == b"a"
    assert stat.S_IMODE(os.lstat(target / "d").st_mode) == 0o751
    assert sorted(os.listdir(target / "d")) == ["a"]


def test_aufs_metadata_members_skipped(tmp_path):
    target = tmp_path / "s"
    unpack([directory(".wh..wh.plnk/"), file(".wh..wh.plnk/123.456", b""), file(".wh..wh.aufs", b""),
            file("d/.wh..wh.orph", b"")], target)
    assert os.listdir(target) == []


def test_merged_overlay_view(tmp_path, overlay_mount):
    base = tmp_path / "base"
    unpack([
        directory("etc/"), file("etc/passwd", b"root\n"), file("etc/shadow", b"secret"),
        directory("var/cache/"), file("var/cache/a", b"a"), file("var/cache/b", b"b"),
        directory("opt/"), file("opt/old", b"o"), file("keep", b"k"),
    ], base)
    middle = tmp_path / "middle"
    unpack([
        whiteout("etc/shadow"),
        file("var/cache/c", b"c"), opaque("var/cache"),
        file("opt/new", b"n"), whiteout("opt"),
    ], middle, [base])
    top = tmp_path / "top"
    unpack([file("etc/shadow", b"again"), whiteout("keep")], top, [middle, base])

    merged = overlay_mount([middle, base])
    assert sorted(os.listdir(merged / "etc")) == ["passwd"]
    assert sorted(os.listdir(merged / "var/cache")) == ["c"]
    assert sorted(os.listdir(merged / "opt")) == ["new"]
    assert (merged / "keep").read_bytes() == b"k"

    merged = overlay_mount([top, middle, base])
    assert (merged / "etc/shadow").read_bytes() == b"again"
    assert (merged / "etc/passwd").read_bytes() == b"root\n"
    assert not os.path.lexists(merged / "keep")
    assert sorted(os.listdir(merged)) == ["etc", "opt", "var"]


# Hard links -----------------------------------------------------------------------


def test_hardlink_same_layer_shares_inode(tmp_path):
    target = tmp_path / "s"
    unpack([file("bin/busybox", b"elf", mode=0o755), hardlink("bin/sh", "bin/busybox"),
            hardlink("/sbin/init", "/bin/busybox")], target)
    busybox = os.lstat(target / "bin/busybox")
    assert os.lstat(target / "bin/sh").st_ino == busybox.st_ino
    assert os.lstat(target / "sbin/init").st_ino == busybox.st_ino
    assert busybox.st_nlink == 3


def test_hardlink_before_target_rejected(tmp_path):
    target = tmp_path / "s"
    with pytest.raises(ImageError, match="hard link target"):
        unpack([hardlink("a", "b"), file("b", b"x")], target)
    assert not target.exists()


def test_hardlink_member_metadata_not_applied(tmp_path):
    target = tmp_path / "s"
    link_info, _ = hardlink("b", "a")
    link_info.mode = 0o4777
    link_info.uid = 99
    unpack([file("a", b"x", mode=0o600, uid=5), (link_info, None)], target)
    st = os.lstat(target / "a")
    assert stat.S_IMODE(st.st_mode) == 0o600
    assert st.st_uid == 5


def test_hardlink_to_lower_file_copies_up(tmp_path):
    base = tmp_path / "base"
    unpack([file("usr/bin/ping", b"v1", mode=0o4711, uid=0, gid=3, mtime=5000,
                  xattrs={"security.capability": CAP_NET_BIND_SERVICE})], base)
    middle = tmp_path / "middle"
    unpack([file("usr/bin/ping", b"v2", mode=0o4711, mtime=6000,
                  xattrs={"security.capability": CAP_NET_BIND_SERVICE})], middle, [base])
    before = tree_state(base), tree_state(middle)
    top = tmp_path / "top"
    result = unpack([hardlink("bin/ping", "usr/bin/ping")], top, [middle, base])

    copied = os.lstat(top / "usr/bin/ping")
    assert (top / "bin/ping").read_bytes() == b"v2"
    assert os.lstat(top / "bin/ping").st_ino == copied.st_ino
    assert copied.st_ino != os.lstat(middle / "usr/bin/ping").st_ino
    assert stat.S_IMODE(copied.st_mode) == 0o4711
    assert copied.st_gid == 0
    assert copied.st_mtime == 6000
    assert os.getxattr(top / "usr/bin/ping", "security.capability") == CAP_NET_BIND_SERVICE
    assert result.size == 2
    assert (tree_state(base), tree_state(middle)) == before


@pytest.mark.parametrize("hide", ["whiteout", "opaque", "whiteout-dir"])
def test_hardlink_to_hidden_lower_file_rejected(tmp_path, hide):
    base = tmp_path / "base"
    unpack([file("d/f", b"x")], base)
    middle = tmp_path / "middle"
    hiding = {"whiteout": [whiteout("d/f")], "opaque": [opaque("d")], "whiteout-dir": [whiteout("d")]}[hide]
    unpack(hiding, middle, [base])
    top = tmp_path / "top"
    with pytest.raises(ImageError, match="hard link target"):
        unpack([hardlink("g", "d/f")], top, [middle, base])
    assert not top.exists()


def test_hardlink_to_own_whiteout_rejected(tmp_path):
    base = tmp_path / "base"
    unpack([file("f", b"x")], base)
    top = tmp_path / "top"
    with pytest.raises(ImageError, match="hard link target"):
        unpack([whiteout("f"), hardlink("g", "f")], top, [base])


# Type changes within one layer ---------------------------------------------------------


def test_file_replaced_by_directory(tmp_path):
    target = tmp_path / "s"
    unpack([file("p", b"x"), directory("p/"), file("p/c", b"c")], target)
    assert (target / "p").is_dir()
    assert (target / "p/c").read_bytes() == b"c"
    assert not is_opaque(target / "p")


def test_directory_replaced_by_file(tmp_path):
    target = tmp_path / "s"
    unpack([directory("p/"), file("p/c", b"c"), directory("p/sub/"), file("p", b"now a file")], target)
    assert (target / "p").read_bytes() == b"now a file"


def test_symlink_replaced_by_directory(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    target = tmp_path / "s"
    unpack([symlink("p", str(outside)), directory("p/"), file("p/c", b"c")], target)
    assert not (target / "p").is_symlink()
    assert (target / "p/c").read_bytes() == b"c"
    assert os.listdir(outside) == []


def test_symlink_replaced_by_file_not_written_through(tmp_path):
    outside = tmp_path / "outside"
    outside.write_bytes(b"sentinel")
    target = tmp_path / "s"
    unpack([symlink("p", str(outside)), file("p", b"new")], target)
    assert (target / "p").read_bytes() == b"new"
    assert outside.read_bytes() == b"sentinel"


def test_hardlinked_file_replaced_not_written_through(tmp_path):
    target = tmp_path / "s"
    unpack([file("a", b"original"), hardlink("b", "a"), file("b", b"replaced")], target)
    assert (target / "a").read_bytes() == b"original"
    assert (target / "b").read_bytes() == b"replaced"


# Escapes ---------------------------------------------------------------------------


@pytest.fixture
def sandbox(tmp_path):
    """A directory with a sentinel file next to the snapshot, and a check that nothing outside changed."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "sentinel").write_bytes(b"do not touch")
    os.symlink("sentinel", outside / "link")
    target = tmp_path / "work" / "snap"
    target.parent.mkdir()
    # The work directory's own mtime changes when the snapshot is made and removed.
    before = outside_state(tmp_path)

    def check_untouched():
        assert not target.exists()
        assert (outside / "sentinel").read_bytes() == b"do not touch"
        assert os.lstat(outside / "sentinel").st_nlink == 1
        assert outside_state(tmp_path) == before

    return outside, target, check_untouched


def outside_state(root: Path) -> dict[str, tuple]:
    """Describe everything under ``root`` except the snapshot's parent ``work`` and what it contains."""
    return {path: entry for path, entry in tree_state(root).items() if path != "work" and not path.startswith("work/")}


def escape_cases(outside: Path) -> dict[str, list]:
    sentinel = str(outside / "sentinel")
    out_rel = "../../outside"
    return {
        "dotdot": [file("../outside/evil", b"x")],
        "dotdot-deep": [directory("a/"), file("a/../../outside/evil", b"x")],
        "absolute-dotdot": [file("/../outside/evil", b"x")],
        "dotdot-dir": [directory("../../outside/newdir/")],
        "dotdot-symlink": [symlink("../evil", "/etc")],
        "symlink-parent-abs": [symlink("l", str(outside)), file("l/sentinel", b"x")],
        "symlink-parent-rel": [symlink("l", out_rel), file("l/sentinel", b"x")],
        "symlink-parent-dir": [symlink("l", str(outside)), directory("l/sub/")],
        "symlink-parent-deep": [directory("d/"), symlink("d/l", "../" + out_rel), file("d/l/evil", b"x")],
        "symlink-parent-fifo": [symlink("l", str(outside)), fifo("l/pipe")],
        "symlink-parent-device": [symlink("l", str(outside)), chardev("l/null", 1, 3)],
        "symlink-parent-symlink": [symlink("l", str(outside)), symlink("l/s", "/")],
        "symlink-parent-whiteout": [symlink("l", str(outside)), whiteout("l/sentinel")],
        "symlink-parent-opaque": [symlink("l", str(outside)), opaque("l")],
        "symlink-parent-hardlink": [file("f", b"x"), symlink("l", str(outside)), hardlink("l/h", "f")],
        "hardlink-dotdot": [hardlink("h", "../outside/sentinel")],
        "hardlink-abs-outside": [hardlink("h", sentinel)],
        "hardlink-through-symlink": [symlink("l", str(outside)), hardlink("h", "l/sentinel")],
        "hardlink-to-escaping-symlink": [symlink("s", "../../outside/sentinel"), hardlink("h", "s")],
        "whiteout-dotdot": [file("a/.wh...", b"")],
        "whiteout-climbs": [whiteout("../outside/sentinel")],
        "char-device-0-0": [chardev("fake-whiteout", 0, 0)],
        "overlay-xattr": [file("f", b"x", xattrs={"trusted.overlay.redirect": b"/etc"})],
        "overlay-user-xattr": [file("f", b"x", xattrs={"user.overlay.opaque": b"y"})],
        "uid-minus-one": [file("f", b"x", uid=0xFFFFFFFF)],
    }


ESCAPE_NAMES = sorted(escape_cases(Path("/x")))


@pytest.mark.parametrize("case", ESCAPE_NAMES)
def test_escape_rejected(sandbox, case):
    outside, target, check_untouched = sandbox
    members = escape_cases(outside)[case]
    with pytest.raises(ImageError) as raised:
        unpack(members, target, layer="sha256:" + "e" * 64)
    assert "sha256:" + "e" * 64 in str(raised.value)
    if case != "hardlink-abs-outside":  # not an escape: the absolute name is read inside, where it is missing
        assert isinstance(raised.value, UnsafeLayer)
    check_untouched()


def test_absolute_symlink_kept_verbatim(tmp_path):
    target = tmp_path / "s"
    unpack([symlink("etc/localtime", "/usr/share/zoneinfo/UTC"), symlink("up", "../../../../etc")], target)
    assert os.readlink(target / "etc/localtime") == "/usr/share/zoneinfo/UTC"
    assert os.readlink(target / "up") == "../../../../etc"


def test_lower_symlink_parent_not_followed(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    base = tmp_path / "base"
    unpack([symlink("lib", str(outside))], base)
    top = tmp_path / "top"
    unpack([file("lib/libc.so", b"so")], top, [base])
    assert (top / "lib").is_dir()
    assert not (top / "lib").is_symlink()
    assert os.listdir(outside) == []


# Reading files from a stack --------------------------------------------------------------


def test_read_file_through_stack(tmp_path):
    base = tmp_path / "base"
    unpack([
        file("etc/passwd", b"root:x:0:0\n"), file("etc/group", b"root:x:0:\n"),
        symlink("etc/alias", "/etc/passwd"), symlink("etc/rel", "../etc/./group"),
        symlink("escape", "../../../../etc/passwd"), directory("data/"), file("data/f", b"d"),
        symlink("loop", "loop"), directory("dir/"),
    ], base)
    top = tmp_path / "top"
    unpack([whiteout("etc/group"), opaque("data"), symlink("etcl", "etc")], top, [base])
    stack = [top, base]

    assert layer.read_file(stack, "/etc/passwd") == b"root:x:0:0\n"
    assert layer.read_file(stack, "etc/alias") == b"root:x:0:0\n"
    assert layer.read_file(stack, "/etcl/passwd") == b"root:x:0:0\n"
    assert layer.read_file(stack, "/escape") == b"root:x:0:0\n"
    assert layer.read_file([base], "/etc/rel") == b"root:x:0:\n"
    assert layer.read_file(stack, "/etc/rel") is None
    assert layer.read_file(stack, "/etc/group") is None
    assert layer.read_file(stack, "/data/f") is None
    assert layer.read_file(stack, "/missing") is None
    with pytest.raises(ImageError, match="symbolic links"):
        layer.read_file(stack, "/loop")
    with pytest.raises(ImageError, match="not a regular file"):
        layer.read_file(stack, "/dir")


# Property tests --------------------------------------------------------------------------

_names = st.sampled_from(["a", "b", "c", "d.txt", "e f", "ü"])
_paths = st.lists(_names, min_size=1, max_size=3).map(tuple)


@st.composite
def trees(draw):
    """A consistent tree: a dict from path tuples to ("dir", mode) | ("file", data, mode) | ("link", target)."""
    entries: dict[tuple, tuple] = {}
    for path in draw(st.lists(_paths, max_size=12)):
        if any(entries.get(path[:i], ("dir",))[0] != "dir" for i in range(1, len(path))):
            continue
        if path in entries and entries[path][0] == "dir" and any(p[: len(path)] == path and p != path for p in entries):
            continue
        for i in range(1, len(path)):
            entries.setdefault(path[:i], ("dir", 0o755))
        kind = draw(st.sampled_from(["dir", "file", "link"]))
        if kind == "dir":
            entries[path] = ("dir", draw(st.sampled_from([0o755, 0o700, 0o1777])))
        elif kind == "file":
            entries[path] = ("file", draw(st.binary(max_size=64)), draw(st.sampled_from([0o644, 0o4755, 0o600])))
        else:
            entries[path] = ("link", draw(st.sampled_from(["/etc/passwd", "../x", "a", "/"])))
    return entries


def tree_members(entries):
    members = []
    for path in sorted(entries, key=len):
        name = "/".join(path)
        entry = entries[path]
        if entry[0] == "dir":
            members.append(directory(name + "/", mode=entry[1]))
        elif entry[0] == "file":
            members.append(file(name, entry[1], mode=entry[2]))
        else:
            members.append(symlink(name, entry[1]))
    return members


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(entries=trees())
def test_random_tree_roundtrips(tmp_path_factory, entries):
    target = tmp_path_factory.mktemp("tree") / "snap"
    unpack(tree_members(entries), target)
    found = {}
    for dirpath, dirnames, filenames in os.walk(target):
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            found[tuple(path.relative_to(target).parts)] = path
    assert set(found) == set(entries)
    for path, entry in entries.items():
        st_ = os.lstat(found[path])
        if entry[0] == "dir":
            assert stat.S_ISDIR(st_.st_mode)
            assert stat.S_IMODE(st_.st_mode) == entry[1]
            assert st_.st_mtime == MTIME
        elif entry[0] == "file":
            assert found[path].read_bytes() == entry[1]
            assert stat.S_IMODE(st_.st_mode) == entry[2]
        else:
            assert os.readlink(found[path]) == entry[1]


_hostile_comps = st.sampled_from(["..", ".", "", "a", "l", "sentinel", ".wh.sentinel", ".wh...", "..a"])
_hostile_names = st.lists(_hostile_comps, min_size=1, max_size=4).map("/".join) | st.lists(
    _hostile_comps, min_size=1, max_size=4).map(lambda c: "/" + "/".join(c))
_link_targets = st.sampled_from(["../../outside", "../../outside/sentinel", "..", "/", "a", "l", "l/.."])


@st.composite
def hostile_members(draw):
    members = []
    for _ in range(draw(st.integers(1, 8))):
        name = draw(_hostile_names)
        kind = draw(st.sampled_from(["file", "dir", "symlink", "hardlink", "fifo"]))
        if kind == "file":
            members.append(file(name, b"evil"))
        elif kind == "dir":
            members.append(directory(name))
        elif kind == "symlink":
            members.append(symlink(name, draw(_link_targets)))
        elif kind == "hardlink":
            members.append(hardlink(name, draw(_hostile_names | _link_targets)))
        else:
            members.append(fifo(name))
    return members


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(members=hostile_members())
def test_hostile_names_stay_inside(tmp_path_factory, members):
    base = tmp_path_factory.mktemp("hostile")
    outside = base / "outside"
    outside.mkdir()
    (outside / "sentinel").write_bytes(b"do not touch")
    target = base / "work" / "snap"
    target.parent.mkdir()
    before = outside_state(base)
    try:
        unpack(members, target)
    except ImageError:
        assert not target.exists()
    assert outside_state(base) == before
    assert os.listdir(base / "work") in ([], ["snap"])


# Full filesystem ---------------------------------------------------------------------------


@pytest.fixture
def small_tmpfs(tmp_path):
    """A 256 KiB tmpfs, unmounted at teardown."""
    import subprocess

    point = tmp_path / "small"
    point.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(point)], check=True)
    yield point
    subprocess.run(["umount", str(point)], check=True)


def test_apply_on_full_disk_raises_store_error(small_tmpfs):
    from dockyard.errors import StoreError

    target = small_tmpfs / "snap"
    with pytest.raises(StoreError, match="no space left on device"):
        unpack([file("big", os.urandom(1 << 20))], target)
    assert os.listdir(small_tmpfs) == []


def test_content_store_on_full_disk_raises_store_error(small_tmpfs):
    from dockyard.errors import StoreError
    from dockyard.image.store import ContentStore

    data = os.urandom(1 << 20)
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    store = ContentStore(small_tmpfs)
    with pytest.raises(StoreError, match=digest):
        store.put(data)
    assert os.listdir(small_tmpfs / "ingest") == []
    assert list(store.digests()) == []


# Corrupt compressed streams -----------------------------------------------------------------


@pytest.mark.parametrize("kind", ["gzip-corrupt", "gzip-truncated", "zstd-corrupt", "zstd-truncated"])
def test_corrupt_compressed_layer_raises_image_error(tmp_path, kind):
    plain = tar_bytes([file("a", os.urandom(20000))])
    # A zstd frame without a checksum cannot show a flipped byte inside a raw block,
    # so the test writes frames with one.
    if kind.startswith("gzip"):
        compressed = gzip.compress(plain)
    else:
        compressed = zstandard.ZstdCompressor(write_checksum=True).compress(plain)
    if kind.endswith("truncated"):
        data = compressed[: len(compressed) // 2]
    else:
        middle = len(compressed) // 2
        data = compressed[:middle] + bytes(b ^ 0xFF for b in compressed[middle : middle + 64]) + compressed[middle + 64 :]
    target = tmp_path / "s"
    target.mkdir()
    with pytest.raises(ImageError, match="sha256:corrupt"):
        layer.apply(layer.decompressed(io.BytesIO(data), None), target, "sha256:corrupt")
    assert not target.exists()


# A layer written by GNU tar ------------------------------------------------------------------


def test_gnu_tar_layer_matches_source_tree(tmp_path):
    import shutil
    import subprocess

    source = tmp_path / "source"
    shutil.copytree("/usr/share/doc/tar", source / "doc", symlinks=True)
    (source / "bin").mkdir()
    (source / "bin/tool").write_bytes(b"#!/bin/sh\n")
    os.chmod(source / "bin/tool", 0o4755)
    os.link(source / "bin/tool", source / "bin/tool-link")
    os.symlink("tool", source / "bin/alias")
    os.symlink("/etc/passwd", source / "bin/abs")
    os.mkfifo(source / "bin/fifo")
    os.chown(source / "bin/tool", 1000, 1000)
    os.setxattr(source / "bin/tool", "security.capability", CAP_NET_BIND_SERVICE)
    os.setxattr(source / "bin/tool", "user.note", b"kept")
    archive = tmp_path / "layer.tar"
    subprocess.run(["tar", "--format=posix", "--xattrs", "--xattrs-include=*", "--numeric-owner",
                    "-cf", str(archive), "-C", str(source), "."], check=True)

    target = tmp_path / "snap"
    target.mkdir()
    with open(archive, "rb") as stream:
        result = layer.apply(stream, target, "sha256:gnu")

    assert result.diff_id == "sha256:" + hashlib.sha256(archive.read_bytes()).hexdigest()
    expected = tree_state(source)
    actual = tree_state(target)
    assert sorted(actual) == sorted(expected)
    for path, (mode, uid, gid, size, mtime_ns, rdev, content) in expected.items():
        assert actual[path][:4] == (mode, uid, gid, size), path
        assert actual[path][4] // 10**9 == mtime_ns // 10**9, path
        assert actual[path][6] == content, path
    assert os.lstat(target / "bin/tool").st_ino == os.lstat(target / "bin/tool-link").st_ino
    assert os.getxattr(target / "bin/tool", "security.capability") == CAP_NET_BIND_SERVICE
    assert os.getxattr(target / "bin/tool", "user.note") == b"kept"


def test_hardlink_replacing_its_targets_directory(tmp_path):
    target = tmp_path / "snap"
    with pytest.raises(ImageError, match="inside the directory it replaces"):
        unpack([file("a/a", b"data"), hardlink("a", "a/a")], target)
    assert not target.exists()
