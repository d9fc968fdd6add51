""".dockerignore patterns and the context walk, on temporary directories."""

from __future__ import annotations

import io
import tarfile

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dockyard.build.context import BuildContext, IgnoreRules, looks_like_tar, peekable, read_dockerfile
from dockyard.errors import BuildError


@pytest.mark.parametrize("patterns, path, excluded", [
    (["*.md"], "notes.md", True),
    (["*.md"], "docs/notes.md", False),
    (["**/*.md"], "docs/deep/notes.md", True),
    (["**/*.md"], "notes.md", True),
    (["*.md", "!README.md"], "README.md", False),
    (["!README.md", "*.md"], "README.md", True),
    (["**/tmp"], "tmp/file", True),
    (["**/tmp"], "src/tmp/file", True),
    (["**/tmp"], "src/tmpfile", False),
    (["/build"], "build/out.o", True),
    (["./build/"], "build/out.o", True),
    (["build"], "src/build", False),
    (["dir/*/x"], "dir/a/x", True),
    (["dir/*/x"], "dir/a/b/x", False),
    (["file?.txt"], "file1.txt", True),
    (["file?.txt"], "file10.txt", False),
    (["[ab].txt"], "a.txt", True),
    (["[!ab].txt"], "a.txt", False),
    (["*", "!keep"], "keep", False),
    (["*", "!keep"], "other", True),
    (["."], "anything/at/all", True),
    (["# comment", ""], "# comment", False),
])
def test_ignore_patterns(patterns, path, excluded):
    assert IgnoreRules(patterns).excludes(path) is excluded


def test_bare_exclamation_rejected():
    with pytest.raises(BuildError, match="must be followed by a pattern"):
        IgnoreRules(["!"])


@given(st.lists(st.from_regex(r"[a-z]{1,6}", fullmatch=True), min_size=1, max_size=4))
def test_pattern_matching_directory_excludes_children(parts):
    rules = IgnoreRules([parts[0]])
    assert rules.excludes("/".join(parts))


@given(st.from_regex(r"[a-z]{1,8}\.[a-z]{1,3}", fullmatch=True))
def test_last_match_wins(name):
    assert IgnoreRules(["*", f"!{name}"]).excludes(name) is False
    assert IgnoreRules([f"!{name}", "*"]).excludes(name) is True


def test_walk_skips_excluded_but_keeps_exceptions(tmp_path):
    for name in ("a.md", "README.md", "src/tmp/x", "src/keep.txt", "docs/a.md"):
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(name)
    (tmp_path / ".dockerignore").write_text("*.md\n!README.md\n**/tmp\ndocs\n!docs/a.md\n")
    context = BuildContext.from_directory(tmp_path)
    files = sorted(path for path, entry in context.walk("") if entry.is_file())
    assert files == [".dockerignore", "README.md", "docs/a.md", "src/keep.txt"]


def test_context_from_tar_and_dockerfile(tmp_path):
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        data = b"FROM scratch\n"
        info = tarfile.TarInfo("sub/Custom")
        info.size = len(data)
        archive.addfile(info, io.BytesIO(data))
    buffer.seek(0)
    head, stream = peekable(buffer)
    assert looks_like_tar(head)
    with BuildContext.from_tar(stream, tmp_path / "work") as context:
        assert read_dockerfile(context, "sub/Custom") == "FROM scratch\n"
        directory = context.directory
        with pytest.raises(BuildError, match="does not exist"):
            read_dockerfile(context, None)
    assert not directory.exists()


def test_plain_text_is_not_tar():
    assert not looks_like_tar(b"FROM busybox\nRUN true\n")


def test_missing_context_directory(tmp_path):
    with pytest.raises(BuildError, match="not found"):
        BuildContext.from_directory(tmp_path / "missing")
