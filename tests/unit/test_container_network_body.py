"""The network flags of ``run``/``create`` and the container service's network helpers, without a kernel."""

from __future__ import annotations

from dockyard.cli import container_flags as flags
from dockyard.cli.main import build_parser
from dockyard.engine.containers import network_body, summary_ports


def body_for(*argv: str) -> dict:
    args = build_parser().parse_args(["run", *argv])
    return flags.build_create_request(args, environ={}, cwd="/work").body


def test_network_flags_in_body():
    body = body_for("--network", "appnet", "--network-alias", "www", "--network-alias", "api", "--ip", "10.1.0.5",
                    "--mac-address", "02:42:0a:01:00:05", "--add-host", "x:1.2.3.4", "--dns", "10.0.0.53",
                    "--dns-search", "example.test", "--dns-option", "ndots:2", "img")
    host = body["HostConfig"]
    assert host["NetworkMode"] == "appnet"
    assert body["NetworkingConfig"] == {"EndpointsConfig": {"appnet": {
        "Aliases": ["www", "api"], "IPAMConfig": {"IPv4Address": "10.1.0.5"}, "MacAddress": "02:42:0a:01:00:05",
    }}}
    assert host["ExtraHosts"] == ["x:1.2.3.4"]
    assert host["Dns"] == ["10.0.0.53"]
    assert host["DnsSearch"] == ["example.test"]
    assert host["DnsOptions"] == ["ndots:2"]


def test_alias_without_network_uses_default():
    body = body_for("--network-alias", "www", "img")
    assert body["NetworkingConfig"] == {"EndpointsConfig": {"default": {"Aliases": ["www"]}}}
    assert "NetworkMode" not in body["HostConfig"]


def test_runtime_flag_in_host_config():
    assert body_for("--runtime", "runc", "img")["HostConfig"]["Runtime"] == "runc"
    assert "Runtime" not in body_for("img")["HostConfig"]


def test_network_body_from_record():
    record = {
        "Config": {"Hostname": "abc", "ExposedPorts": {"8080/tcp": {}}},
        "HostConfig": {"NetworkMode": "default", "PortBindings": {"8080/tcp": [{"HostPort": "8600"}]}},
        "NetworkingConfig": {"EndpointsConfig": {"default": {"Aliases": ["a"]}}},
        "MacAddress": "02:42:ac:11:00:02",
    }
    body = network_body(record)
    assert body["ExposedPorts"] == {"8080/tcp": {}}
    assert body["Hostname"] == "abc"
    assert body["HostConfig"] is record["HostConfig"]
    assert body["NetworkingConfig"] == record["NetworkingConfig"]
    assert body["MacAddress"] == "02:42:ac:11:00:02"


def test_network_body_from_old_record():
    body = network_body({"Config": {}, "HostConfig": {}})
    assert body["NetworkingConfig"] == {}
    assert body["MacAddress"] == ""


def test_summary_ports_published_and_exposed():
    published = [{"HostIp": "", "HostPort": 8600, "Protocol": "tcp", "ContainerPort": 8080, "ContainerIp": "10.0.0.2"}]
    found = summary_ports({"8080/tcp": {}, "53/udp": {}, "9000": {}}, published)
    assert found == [
        {"IP": "0.0.0.0", "PrivatePort": 8080, "PublicPort": 8600, "Type": "tcp"},
        {"PrivatePort": 53, "Type": "udp"},
        {"PrivatePort": 9000, "Type": "tcp"},
    ]


def test_summary_ports_without_exposed():
    assert summary_ports(None, []) == []
