"""The embedded DNS server's answers and the /etc/hosts and resolv.conf texts, without sockets."""

from __future__ import annotations

import json
import socket
import struct
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dockyard.errors import InvalidArgument
from dockyard.network import dns, hosts


def query(name: str, qtype: int = dns.TYPE_A, query_id: int = 7) -> bytes:
    question = b"".join(bytes([len(label)]) + label.encode() for label in name.split(".")) + b"\0"
    return struct.pack("!HHHHHH", query_id, dns.FLAG_RD, 1, 0, 0, 0) + question + struct.pack("!HH", qtype, 1)


def answers(reply: bytes) -> tuple[int, list[bytes]]:
    """Return the response code and each answer's data; every answer's name must be a two-byte pointer."""
    flags, _, count = struct.unpack("!HHH", reply[2:8])
    question = dns.parse_question(reply)
    offset = question.end
    found = []
    for _ in range(count):
        length = struct.unpack("!H", reply[offset + 10 : offset + 12])[0]
        found.append(reply[offset + 12 : offset + 12 + length])
        offset += 12 + length
    return flags & 0xF, found


@pytest.fixture
def server(tmp_path: Path) -> dns.Server:
    names = tmp_path / "names.json"
    names.write_text(json.dumps({"web": ["10.0.0.2"], "frontend": ["10.0.0.2"], "db": ["10.0.0.3"]}))
    return dns.Server(socket.socket(socket.AF_INET, socket.SOCK_DGRAM), dns.Records([str(names)]), [])


def test_answers_known_name(server: dns.Server) -> None:
    reply = server.answer(query("web"))
    assert reply is not None
    assert reply[:2] == b"\x00\x07"
    assert answers(reply) == (0, [socket.inet_aton("10.0.0.2")])


def test_name_match_ignores_case(server: dns.Server) -> None:
    reply = server.answer(query("WeB"))
    assert reply is not None
    assert answers(reply) == (0, [socket.inet_aton("10.0.0.2")])


def test_aaaa_of_known_name_is_empty(server: dns.Server) -> None:
    reply = server.answer(query("web", qtype=28))
    assert reply is not None
    assert answers(reply) == (0, [])


def test_unknown_name_is_forwarded(server: dns.Server) -> None:
    assert server.answer(query("example.test")) is None


def test_forward_without_upstream_is_nxdomain(server: dns.Server) -> None:
    assert answers(server.forward(query("example.test"))) == (dns.RCODE_NXDOMAIN, [])


def test_reverse_lookup(server: dns.Server) -> None:
    reply = server.answer(query("3.0.0.10.in-addr.arpa", qtype=dns.TYPE_PTR))
    assert reply is not None
    assert answers(reply) == (0, [dns.encode_name("db")])


def test_records_reload_when_file_changes(tmp_path: Path) -> None:
    names = tmp_path / "names.json"
    names.write_text(json.dumps({"web": ["10.0.0.2"]}))
    records = dns.Records([str(names)])
    assert records.lookup("web") == ["10.0.0.2"]
    replacement = tmp_path / "next.json"
    replacement.write_text(json.dumps({"web": ["10.0.0.9"]}))
    replacement.replace(names)
    assert records.lookup("web") == ["10.0.0.9"]


def test_malformed_query_is_format_error(server: dns.Server) -> None:
    reply = server.answer(struct.pack("!HHHHHH", 1, 0, 2, 0, 0, 0))
    assert reply is not None
    assert struct.unpack("!H", reply[2:4])[0] & 0xF == dns.RCODE_FORMERR


@given(data=st.binary(max_size=80))
def test_garbage_never_raises(data: bytes) -> None:
    names = dns.Records([])
    server = dns.Server(socket.socket(socket.AF_INET, socket.SOCK_DGRAM), names, [])
    try:
        server.answer(data)
    finally:
        server.sock.close()


def test_hosts_file_lists_extra_hosts_and_own_address() -> None:
    text = hosts.hosts_file("web", "", ["10.0.0.2"], ["db:10.0.0.9", "host.docker.internal:host-gateway"], "10.0.0.1")
    lines = text.splitlines()
    assert lines[0] == "127.0.0.1\tlocalhost"
    assert "10.0.0.9\tdb" in lines
    assert "10.0.0.1\thost.docker.internal" in lines
    assert lines[-1] == "10.0.0.2\tweb"


def test_hosts_file_with_domain() -> None:
    assert hosts.hosts_file("web", "example.test", ["10.0.0.2"]).splitlines()[-1] == "10.0.0.2\tweb.example.test web"


@pytest.mark.parametrize("entry", ["nocolon", "db:not-an-ip", ":10.0.0.1"])
def test_extra_host_rejects(entry: str) -> None:
    with pytest.raises(InvalidArgument):
        hosts.parse_extra_host(entry, "10.0.0.1")


def test_resolv_conf_embedded() -> None:
    text = hosts.resolv_conf("nameserver 10.9.9.9\nsearch corp.test\n", embedded=True)
    assert text == "nameserver 127.0.0.11\nsearch corp.test\noptions ndots:0\n"


def test_resolv_conf_default_bridge_with_flags() -> None:
    text = hosts.resolv_conf("nameserver 10.9.9.9\n", embedded=False, dns=["10.1.1.1"], dns_search=["a.test"],
                             dns_options=["timeout:2"])
    assert text == "nameserver 10.1.1.1\nsearch a.test\noptions timeout:2\n"


def test_resolv_conf_rejects_bad_dns() -> None:
    with pytest.raises(InvalidArgument):
        hosts.resolv_conf("", embedded=False, dns=["dns.example"])
