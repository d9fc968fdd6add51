from dockyard.engine.rootfs import container_resolv_conf

UPSTREAM = "# written by systemd-resolved\nnameserver 192.0.2.1\nnameserver 192.0.2.2\nsearch corp.example\n"


def test_loopback_resolver_replaced_by_upstream():
    host = "nameserver 127.0.0.53\noptions edns0 trust-ad\nsearch corp.example\n"
    result = container_resolv_conf(host, UPSTREAM)
    assert "127.0.0.53" not in result
    assert result.splitlines()[:2] == ["nameserver 192.0.2.1", "nameserver 192.0.2.2"]
    assert "options edns0 trust-ad" in result.splitlines()
    assert "search corp.example" in result.splitlines()


def test_reachable_servers_kept_as_they_are():
    host = "nameserver 198.51.100.7\nnameserver 127.0.0.1\n"
    assert container_resolv_conf(host, UPSTREAM) == "nameserver 198.51.100.7\n"


def test_ipv6_loopback_dropped_without_upstream():
    assert container_resolv_conf("nameserver ::1\n", "") == ""


def test_upstream_loopback_entries_ignored():
    result = container_resolv_conf("nameserver 127.0.0.53\n", "nameserver 127.0.0.1\nnameserver 192.0.2.9\n")
    assert result == "nameserver 192.0.2.9\n"
