"""The embedded DNS server of user-defined networks, on 127.0.0.11:53 in a container's network namespace.

Run as ``python -m dockyard.network.dns SPEC_JSON``; SPEC_JSON holds
``netns`` (a path such as ``/proc/<pid>/ns/net``), ``records`` (the name files
of the container's networks) and ``upstreams`` (``"ip"`` or ``"ip:port"``).
The process stays in the host's network namespace. Only its listening socket
is opened in the container's, from a thread that ``setns(2)``s there, so
queries it forwards leave from the host, as Docker's do, and can reach a
resolver on the host's loopback. It writes ``ready`` to stdout once it
listens, and runs until SIGTERM.

A name file is JSON ``{"name": ["ip", ...]}``, with names in lower case,
rewritten atomically by the network service whenever a container joins or
leaves; the server rereads it when its modification time changes.

Answers: A for a known name, an empty NOERROR answer for other types of a
known name (so AAAA lookups fall back to A quickly), PTR for a known address,
everything else forwarded to the upstreams in turn, NXDOMAIN when there is
none or none replies. Only UDP is served.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import os
import signal
import socket
import struct
import sys
import threading
from typing import Any, Iterable

log = logging.getLogger("dockyard.network.dns")

LISTEN_ADDRESS = "127.0.0.11"
TTL = 600
UPSTREAM_TIMEOUT = 2.0

TYPE_A = 1
TYPE_PTR = 12
CLASS_IN = 1
RCODE_NXDOMAIN = 3
RCODE_FORMERR = 1
FLAG_QR = 0x8000
FLAG_AA = 0x0400
FLAG_RD = 0x0100
FLAG_RA = 0x0080


class Question:
    def __init__(self, name: str, qtype: int, qclass: int, end: int) -> None:
        self.name = name
        self.qtype = qtype
        self.qclass = qclass
        # Offset just past the question section, where answers start.
        self.end = end


def parse_question(packet: bytes) -> Question:
    """Parse the header and the first question of a DNS query; raise ValueError when malformed."""
    if len(packet) < 12:
        raise ValueError("shorter than a DNS header")
    count = struct.unpack("!H", packet[4:6])[0]
    if count != 1:
        raise ValueError(f"{count} questions, expected 1")
    labels = []
    offset = 12
    while True:
        if offset >= len(packet):
            raise ValueError("name runs past the end")
        length = packet[offset]
        offset += 1
        if length == 0:
            break
        if length & 0xC0:
            raise ValueError("compressed name in a question")
        labels.append(packet[offset : offset + length].decode("ascii", "replace"))
        offset += length
    if offset + 4 > len(packet):
        raise ValueError("question type and class missing")
    qtype, qclass = struct.unpack("!HH", packet[offset : offset + 4])
    return Question(".".join(labels).lower(), qtype, qclass, offset + 4)


def encode_name(name: str) -> bytes:
    out = b""
    for label in name.rstrip(".").split("."):
        if label:
            out += bytes([len(label)]) + label.encode("ascii")
    return out + b"\0"


def build_reply(query: bytes, question: Question, rcode: int, answers: Iterable[tuple[int, bytes]]) -> bytes:
    """Build a reply to ``query`` carrying its question and ``answers`` (record type, record data)."""
    answers = list(answers)
    query_id, flags = struct.unpack("!HH", query[:4])
    reply_flags = FLAG_QR | FLAG_AA | FLAG_RA | (flags & FLAG_RD) | (flags & 0x7800) | rcode
    header = struct.pack("!HHHHHH", query_id, reply_flags, 1, len(answers), 0, 0)
    body = query[12 : question.end]
    for record_type, data in answers:
        # 0xC00C points at the question's name, right after the header.
        body += struct.pack("!HHHIH", 0xC00C, record_type, CLASS_IN, TTL, len(data)) + data
    return header + body


def error_reply(query: bytes, rcode: int) -> bytes:
    query_id, flags = struct.unpack("!HH", query[:4])
    return struct.pack("!HHHHHH", query_id, FLAG_QR | FLAG_RA | (flags & FLAG_RD) | rcode, 0, 0, 0, 0)


def reverse_name(address: str) -> str:
    return ipaddress.ip_address(address).reverse_pointer


class Records:
    """The names of a container's networks, reloaded from their files when those change."""

    def __init__(self, paths: list[str]) -> None:
        self.paths = paths
        self._stamps: dict[str, float] = {}
        self._names: dict[str, dict[str, list[str]]] = {}

    def _refresh(self) -> None:
        for path in self.paths:
            try:
                stamp = os.stat(path).st_mtime_ns
            except FileNotFoundError:
                self._names.pop(path, None)
                continue
            if self._stamps.get(path) == stamp:
                continue
            try:
                with open(path, encoding="utf-8") as file:
                    self._names[path] = {name.lower(): list(ips) for name, ips in json.load(file).items()}
                self._stamps[path] = stamp
            except (OSError, ValueError) as error:
                log.warning("cannot read name file %s: %s", path, error)

    def lookup(self, name: str) -> list[str] | None:
        """Return the addresses of ``name``, or None when no network knows it."""
        self._refresh()
        found: list[str] = []
        known = False
        for names in self._names.values():
            if name in names:
                known = True
                found += [ip for ip in names[name] if ip not in found]
        return found if known else None

    def reverse(self, name: str) -> list[str]:
        self._refresh()
        found = []
        for names in self._names.values():
            for host, ips in names.items():
                if any(reverse_name(ip) == name for ip in ips) and "." not in host and host not in found:
                    found.append(host)
        return found


def _parse_upstream(text: str) -> tuple[str, int]:
    if text.startswith("["):
        host, _, port = text[1:].partition("]:")
        return host, int(port or 53)
    if text.count(":") == 1:
        host, _, port = text.partition(":")
        return host, int(port)
    return text, 53


class Server:
    def __init__(self, sock: socket.socket, records: Records, upstreams: list[str]) -> None:
        self.sock = sock
        self.records = records
        self.upstreams = [_parse_upstream(each) for each in upstreams]

    def answer(self, query: bytes) -> bytes | None:
        """Return the reply to ``query``, or None when it has to be forwarded."""
        try:
            question = parse_question(query)
        except ValueError as error:
            log.debug("malformed query: %s", error)
            return error_reply(query, RCODE_FORMERR) if len(query) >= 12 else b""
        if question.qclass != CLASS_IN:
            return None
        if question.qtype == TYPE_PTR:
            hosts = self.records.reverse(question.name)
            if hosts:
                return build_reply(query, question, 0, [(TYPE_PTR, encode_name(host)) for host in hosts])
            return None
        addresses = self.records.lookup(question.name)
        if addresses is None:
            return None
        if question.qtype != TYPE_A:
            return build_reply(query, question, 0, [])
        return build_reply(query, question, 0, [(TYPE_A, socket.inet_aton(ip)) for ip in addresses])

    def forward(self, query: bytes) -> bytes:
        for host, port in self.upstreams:
            family = socket.AF_INET6 if ":" in host else socket.AF_INET
            with socket.socket(family, socket.SOCK_DGRAM) as upstream:
                upstream.settimeout(UPSTREAM_TIMEOUT)
                try:
                    upstream.connect((host, port))
                    upstream.send(query)
                    while True:
                        reply = upstream.recv(65535)
                        if reply[:2] == query[:2]:
                            return reply
                except OSError as error:
                    log.debug("upstream %s:%d failed: %s", host, port, error)
        try:
            return build_reply(query, parse_question(query), RCODE_NXDOMAIN, [])
        except ValueError:
            return error_reply(query, RCODE_NXDOMAIN)

    def handle(self, query: bytes, client: Any) -> None:
        reply = self.answer(query)
        if reply is None:
            threading.Thread(target=lambda: self._send(self.forward(query), client), daemon=True).start()
        elif reply:
            self._send(reply, client)

    def _send(self, reply: bytes, client: Any) -> None:
        try:
            self.sock.sendto(reply, client)
        except OSError as error:
            log.debug("cannot send reply to %s: %s", client, error)

    def serve_forever(self) -> None:
        while True:
            query, client = self.sock.recvfrom(65535)
            self.handle(query, client)


def listen_in_netns(netns_path: str, address: str = LISTEN_ADDRESS, port: int = 53) -> socket.socket:
    """Open a UDP socket bound to ``address:port`` inside the network namespace at ``netns_path``."""
    from dockyard.network.netlink import _setns

    result: dict[str, Any] = {}

    def run() -> None:
        try:
            fd = os.open(netns_path, os.O_RDONLY | os.O_CLOEXEC)
            try:
                _setns(fd)
            finally:
                os.close(fd)
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            sock.bind((address, port))
            result["sock"] = sock
        except OSError as error:
            result["error"] = error

    thread = threading.Thread(target=run)
    thread.start()
    thread.join()
    if "error" in result:
        raise result["error"]
    return result["sock"]


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s dns: %(message)s")
    spec = json.loads(argv[0])
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    sock = listen_in_netns(spec["netns"], spec.get("address", LISTEN_ADDRESS), int(spec.get("port", 53)))
    server = Server(sock, Records(spec["records"]), spec.get("upstreams", []))
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    sys.stdout.close()
    server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
