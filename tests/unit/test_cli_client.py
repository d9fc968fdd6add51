"""The CLI client's request encoding, and which commands and variables it hands to a server."""

from __future__ import annotations

import os

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dockyard.cli import client, server


@pytest.mark.parametrize(("argv", "expected"), [
    (["ps"], True),
    (["--root", "login", "ps"], True),
    (["run", "--rm", "busybox", "login"], True),
    (["login", "localhost:5000"], False),
    (["-D", "login"], False),
    (["system", "service", "--host", "unix:///tmp/x.sock"], False),
    (["system", "df"], True),
    ([], True),
])
def test_which_commands_may_use_the_server(argv: list[str], expected: bool) -> None:
    assert client._may_use_server(argv) is expected


def test_server_address_ignores_other_variables() -> None:
    base = {"PATH": "/usr/bin", "HOME": "/root", "DOCKYARD_ROOT": "/srv/a", "LANG": "C.UTF-8", "PYTHONPATH": "src"}
    assert client.server_environment(base) == {"DOCKYARD_ROOT": "/srv/a", "LANG": "C.UTF-8", "PYTHONPATH": "src"}
    same = client.server_address({**base, "PATH": "/bin", "PYTEST_CURRENT_TEST": "x"})
    assert same == client.server_address(base)
    assert client.server_address({**base, "DOCKYARD_ROOT": "/srv/b"}) != client.server_address(base)
    assert client.server_address(base).startswith(f"\0dockyard-cli/{os.getuid()}/")


text = st.text(st.characters(blacklist_characters="\0", blacklist_categories=("Cs",)), max_size=20)


@given(
    argv=st.lists(text, min_size=1, max_size=6),
    environment=st.dictionaries(text.filter(lambda name: name and "=" not in name), text, max_size=6),
    umask=st.integers(0, 0o777),
    present=st.sampled_from([0, 1, 3, 7, 6]),
)
def test_request_round_trip(argv, environment, umask, present) -> None:
    data = client.encode_request(argv, environment, umask, present)
    size = int.from_bytes(data[:4], "big")
    assert size == len(data) - 4
    fds = list(range(100, 100 + bin(present).count("1") + 1))
    request = server.Request(data[4:], list(fds))
    assert (request.argv, request.environment, request.umask) == (argv, environment, umask)
    assert request.cwd == fds[-1]
    assert sorted(request.stdio) == [fd for fd in client.STDIO_FDS if present & (1 << fd)]


def test_request_rejects_wrong_descriptor_count() -> None:
    data = client.encode_request(["dockyard", "ps"], {}, 0o022, 7)
    with pytest.raises(ValueError, match="passed 2 file descriptors, not 4"):
        server.Request(data[4:], [100, 101])
