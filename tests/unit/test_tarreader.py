"""The streaming tar reader against Python's tarfile: same members from the same bytes, and its errors."""

from __future__ import annotations

import io
import tarfile

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dockyard.image.tarreader import MAX_METADATA_SIZE, TarReader, parse_pax

FORMATS = {"ustar": tarfile.USTAR_FORMAT, "gnu": tarfile.GNU_FORMAT, "pax": tarfile.PAX_FORMAT}


class ShortReads(io.RawIOBase):
    """A stream that returns at most ``step`` bytes per read, as a pipe or a socket may."""

    def __init__(self, data: bytes, step: int) -> None:
        super().__init__()
        self._data = data
        self._position = 0
        self._step = step

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        count = self._step if size < 0 else min(size, self._step)
        chunk = self._data[self._position : self._position + count]
        self._position += len(chunk)
        return chunk


def build(members: list[tuple[tarfile.TarInfo, bytes | None]], fmt: int = tarfile.PAX_FORMAT) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=fmt) as archive:
        for info, data in members:
            archive.addfile(info, io.BytesIO(data) if data is not None else None)
    return buffer.getvalue()


def member(name: str, kind: bytes = tarfile.REGTYPE, data: bytes | None = None, **fields: object) -> tuple[tarfile.TarInfo, bytes | None]:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.mtime = 1_600_000_000
    for key, value in fields.items():
        setattr(info, key, value)
    if data is not None:
        info.size = len(data)
    return info, data


def summary(info: tarfile.TarInfo, data: bytes | None) -> tuple:
    return (info.name, info.type, info.size, info.mode, info.uid, info.gid, int(info.mtime), info.linkname,
            info.devmajor if info.ischr() or info.isblk() else 0,
            info.devminor if info.ischr() or info.isblk() else 0,
            {k: v for k, v in info.pax_headers.items() if k.startswith("SCHILY.xattr.")}, data)


def read_with_tarfile(data: bytes) -> list[tuple]:
    result = []
    with tarfile.open(fileobj=io.BytesIO(data), mode="r|") as archive:
        for info in archive:
            content = archive.extractfile(info).read() if info.isreg() else None  # type: ignore[union-attr]
            result.append(summary(info, content))
    return result


def read_with_reader(data: bytes, step: int | None = None) -> list[tuple]:
    stream = ShortReads(data, step) if step else io.BytesIO(data)
    reader = TarReader(stream)
    result = []
    for info in reader:
        content = None
        if info.isreg():
            parts = []
            while chunk := reader.read_data(7919):
                parts.append(chunk)
            content = b"".join(parts)
        result.append(summary(info, content))
    return result


def sample_members() -> list[tuple[tarfile.TarInfo, bytes | None]]:
    long_dir = "d" * 120
    return [
        member("etc", tarfile.DIRTYPE, mode=0o755),
        member("etc/hostname", data=b"box\n", mode=0o644, uid=1000, gid=1000),
        member("etc/empty", data=b""),
        member(f"{long_dir}/{'f' * 150}", data=b"x" * 1000),
        member("link", tarfile.SYMTYPE, linkname="t" * 200),
        member("hard", tarfile.LNKTYPE, linkname="etc/hostname"),
        member("dev/null", tarfile.CHRTYPE, devmajor=1, devminor=3, mode=0o666),
        member("dev/sda", tarfile.BLKTYPE, devmajor=8, devminor=0),
        member("pipe", tarfile.FIFOTYPE),
        member("big", data=bytes(range(256)) * 5000),
    ]


@pytest.mark.parametrize("fmt", FORMATS)
def test_reader_matches_tarfile(fmt: str) -> None:
    members = sample_members()
    if fmt == "ustar":
        # ustar has no room for names this long.
        members = [m for m in members if len(m[0].name) <= 100 and len(m[0].linkname) <= 100]
    data = build(members, FORMATS[fmt])
    expected = read_with_tarfile(data)
    assert read_with_reader(data) == expected
    assert read_with_reader(data, step=100) == expected


def test_pax_fields_override_header() -> None:
    info, data = member("short", data=b"abc", uid=5)
    info.pax_headers = {"path": "a/much/longer/name", "uid": "123456789", "mtime": "1600000000.5",
                        "SCHILY.xattr.user.test": "value"}
    [(name, _, size, _, uid, _, _, _, _, _, xattrs, content)] = read_with_reader(build([(info, data)]))
    assert name == "a/much/longer/name"
    assert uid == 123456789
    assert size == 3
    assert xattrs == {"SCHILY.xattr.user.test": "value"}
    assert content == b"abc"


def test_global_pax_header_applies_to_later_members() -> None:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT,
                      pax_headers={"SCHILY.xattr.user.all": "yes"}) as archive:
        for name in ("a", "b"):
            info, _ = member(name, data=b"")
            archive.addfile(info, io.BytesIO(b""))
    infos = list(TarReader(io.BytesIO(buffer.getvalue())))
    assert [info.name for info in infos] == ["a", "b"]
    assert all(info.pax_headers.get("SCHILY.xattr.user.all") == "yes" for info in infos)


def test_large_uid_uses_base256() -> None:
    info, data = member("f", data=b"", uid=2**40, gid=7)
    [(_, _, _, _, uid, gid, *_)] = read_with_reader(build([(info, data)], tarfile.GNU_FORMAT))
    assert uid == 2**40
    assert gid == 7


def test_old_regular_type_with_slash_is_directory() -> None:
    info, _ = member("olddir/", tarfile.AREGTYPE)
    [read] = list(TarReader(io.BytesIO(build([(info, None)], tarfile.USTAR_FORMAT))))
    assert read.isdir()


def test_empty_stream_has_no_members() -> None:
    assert list(TarReader(io.BytesIO(b""))) == []


def test_stops_at_end_marker() -> None:
    data = build([member("a", data=b"1")]) + b"not read"
    reader = TarReader(io.BytesIO(data))
    assert [info.name for info in reader] == ["a"]


def test_bad_checksum_raises() -> None:
    data = bytearray(build([member("a", data=b"1"), member("b", data=b"2")]))
    second_header = data.index(b"b\x00")  # the pax format writes no extended header for these names
    data[second_header + 100] ^= 0x01  # a bit of the mode field
    with pytest.raises(tarfile.ReadError, match="bad checksum"):
        list(TarReader(io.BytesIO(bytes(data))))


@pytest.mark.parametrize("cut", [100, 512 + 1, 1024 + 10])
def test_truncated_stream_raises(cut: int) -> None:
    data = build([member("a", data=b"x" * 600), member("b", data=b"y")])
    reader = TarReader(io.BytesIO(data[:cut]))
    with pytest.raises(tarfile.ReadError, match="end of data"):
        for info in reader:
            while reader.read_data(4096):
                pass


def test_oversized_pax_header_raises() -> None:
    info, data = member("a", data=b"")
    info.pax_headers = {"comment": "c" * (MAX_METADATA_SIZE + 10)}
    with pytest.raises(tarfile.ReadError, match="larger than"):
        list(TarReader(io.BytesIO(build([(info, data)]))))


def test_sparse_member_raises() -> None:
    info, data = member("a", data=b"")
    info.pax_headers = {"GNU.sparse.major": "1", "GNU.sparse.minor": "0"}
    with pytest.raises(tarfile.ReadError, match="sparse"):
        list(TarReader(io.BytesIO(build([(info, data)]))))


@pytest.mark.parametrize("records", [b"5 a=b\n", b"x a=b\n", b"7 a=bc", b"6 =bc\n", b"99 a=b\n", b"nolength"])
def test_invalid_pax_records_raise(records: bytes) -> None:
    with pytest.raises(tarfile.ReadError, match="invalid pax header"):
        parse_pax(records)


def test_pax_record_value_may_contain_newline_and_equals() -> None:
    assert parse_pax(b"13 k=a=b\nc=d\n") == {"k": "a=b\nc=d"}


names = st.text(alphabet=st.characters(blacklist_characters="\x00/", blacklist_categories=("Cs",)), min_size=1, max_size=40)


@st.composite
def archives(draw: st.DrawFn) -> tuple[list[tuple[tarfile.TarInfo, bytes | None]], int]:
    fmt = draw(st.sampled_from([tarfile.GNU_FORMAT, tarfile.PAX_FORMAT]))
    members = []
    for _ in range(draw(st.integers(0, 8))):
        path = "/".join(draw(st.lists(names, min_size=1, max_size=6)))
        kind = draw(st.sampled_from([tarfile.REGTYPE, tarfile.DIRTYPE, tarfile.SYMTYPE, tarfile.LNKTYPE, tarfile.FIFOTYPE]))
        fields: dict[str, object] = {
            "mode": draw(st.integers(0, 0o7777)),
            "uid": draw(st.integers(0, 2**32)),
            "gid": draw(st.integers(0, 2**21)),
        }
        data = None
        if kind == tarfile.REGTYPE:
            data = draw(st.binary(max_size=2000))
        if kind in (tarfile.SYMTYPE, tarfile.LNKTYPE):
            fields["linkname"] = "/".join(draw(st.lists(names, min_size=1, max_size=4)))
        members.append(member(path, kind, data, **fields))
    return members, fmt


@settings(max_examples=150, deadline=None)
@given(archive=archives(), step=st.sampled_from([None, 1, 511, 513, 4096]))
def test_reader_agrees_with_tarfile(archive: tuple[list[tuple[tarfile.TarInfo, bytes | None]], int], step: int | None) -> None:
    members, fmt = archive
    data = build(members, fmt)
    assert read_with_reader(data, step) == read_with_tarfile(data)


# Hand-made headers: numeric field forms that tar writers use ---------------------

USTAR_FIELDS = {"name": (0, 100), "mode": (100, 8), "uid": (108, 8), "gid": (116, 8), "size": (124, 12),
                "mtime": (136, 12), "chksum": (148, 8), "typeflag": (156, 1), "linkname": (157, 100),
                "magic": (257, 8), "prefix": (345, 155)}


def raw_header(signed_checksum: bool = False, **fields: bytes) -> bytes:
    """Build one 512-byte ustar header from raw field bytes, with a valid checksum."""
    values = {"name": b"f", "mode": b"0000644\x00", "uid": b"0000000\x00", "gid": b"0000000\x00",
              "size": b"00000000000\x00", "mtime": b"13000000000\x00", "typeflag": b"0",
              "magic": b"ustar\x0000", **fields}
    block = bytearray(512)
    for key, value in values.items():
        offset, length = USTAR_FIELDS[key]
        assert len(value) <= length, key
        block[offset : offset + len(value)] = value
    block[148:156] = b" " * 8
    if signed_checksum:
        total = sum(b - 256 if b > 127 else b for b in block)
    else:
        total = sum(block)
    block[148:156] = b"%06o\x00 " % (total & 0o777777)
    return bytes(block)


def read_raw(header: bytes, data: bytes = b"") -> tarfile.TarInfo:
    padding = -len(data) % 512
    [info] = list(TarReader(io.BytesIO(header + data + bytes(padding) + bytes(1024))))
    return info


@pytest.mark.parametrize(("field", "expected"), [
    (b"0000644\x00", 0o644),  # POSIX: digits and a NUL
    (b"000644 \x00", 0o644),  # old GNU tar: a space and a NUL
    (b"0000644 ", 0o644),  # a space and no NUL
    (b"  644\x00\x00\x00", 0o644),  # leading spaces, NUL padding
    (b"644\x00\x00\x00\x00\x00", 0o644),
    (b"0644\x00xyz", 0o644),  # bytes after the first NUL are ignored
    (b"\x00" * 8, 0),  # an empty field
    (b" " * 8, 0),
    (b"\x80\x00\x00\x00\x00\x00\x01\xa4", 0o644),  # base-256
])
def test_numeric_field_forms(field: bytes, expected: int) -> None:
    info = read_raw(raw_header(mode=field))
    assert info.mode == expected
    with tarfile.open(fileobj=io.BytesIO(raw_header(mode=field) + bytes(1024)), mode="r|") as archive:
        assert archive.next().mode == expected  # type: ignore[union-attr]


@pytest.mark.parametrize(("field", "expected"), [
    (b"\x80" + bytes(6) + b"\x01", 1),
    (b"\x80\x00\x00\x01\x00\x00\x00\x00", 2**32),
    (b"\xff" * 8, -1),  # negative base-256: the reader passes it on, the unpacker rejects it
    (b"0001750 ", 1000),
    (b"1750\x00   ", 1000),
])
def test_uid_field_forms(field: bytes, expected: int) -> None:
    assert read_raw(raw_header(uid=field)).uid == expected


def test_size_with_spaces_reads_content() -> None:
    info = read_raw(raw_header(size=b"        14 \x00"), b"hello world!")  # octal 14 = 12 bytes
    assert info.size == 12


@pytest.mark.parametrize("field", [b"06x4\x00\x00\x00\x00", b"0o8\x00\x00\x00\x00\x00", b"9\x00\x00\x00\x00\x00\x00\x00"])
def test_invalid_mode_field_raises(field: bytes) -> None:
    with pytest.raises(tarfile.ReadError, match="invalid mode field"):
        read_raw(raw_header(mode=field))


def test_signed_checksum_accepted() -> None:
    # Some old tar programs summed the header bytes as signed chars.
    header = raw_header(signed_checksum=True, name="é-file".encode())
    assert read_raw(header).name == "é-file"


def test_checksum_of_high_bytes() -> None:
    # The byte sum (about 90,000) exceeds 16 bits, and each half of the block is close
    # to its maximum of 256 * 255.
    header = raw_header(name=b"\xff" * 100, linkname=b"\xfe" * 100, prefix=b"\xfd" * 155, typeflag=b"2")
    info = read_raw(header)
    assert info.name == "\udcfd" * 155 + "/" + "\udcff" * 100
    assert info.linkname == "\udcfe" * 100
    corrupt = bytearray(header)
    corrupt[50] = 0xFE
    with pytest.raises(tarfile.ReadError, match="bad checksum"):
        read_raw(bytes(corrupt))


def test_checksum_field_without_trailing_space() -> None:
    header = bytearray(raw_header())
    header[148:156] = b"0" + header[148:155]  # "0NNNNNN\x00", seven digits and a NUL
    assert read_raw(bytes(header)).name == "f"


def test_read_data_views_stay_valid() -> None:
    data = build([member("a", data=b"A" * 3000), member("b", data=b"B" * 3000)])
    reader = TarReader(ShortReads(data, 1024))
    views = []
    for info in reader:
        while chunk := reader.read_data(1000):
            views.append(chunk)
    assert b"".join(views) == b"A" * 3000 + b"B" * 3000
