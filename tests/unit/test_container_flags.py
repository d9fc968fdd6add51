"""Parsers of the run/create flags and the create body they build, checked value by value."""

from __future__ import annotations

import json
import os
import socket

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dockyard.cli import container_flags as flags
from dockyard.cli.container import container_rows, ellipsis, format_ports, go_quote
from dockyard.cli.container_io import StdcopyDecoder
from dockyard.cli.main import build_parser
from dockyard.errors import InvalidArgument


def body_for(*argv: str, environ: dict[str, str] | None = None, cwd: str = "/work") -> dict:
    """Parse ``dockyard run ARGV`` and return the create body."""
    args = build_parser().parse_args(["run", *argv])
    return flags.build_create_request(args, environ=environ or {}, cwd=cwd).body


def error_for(*argv: str, environ: dict[str, str] | None = None) -> str:
    with pytest.raises(InvalidArgument) as caught:
        body_for(*argv, environ=environ)
    return str(caught.value)


# -- memory sizes ---------------------------------------------------------------------------------


@pytest.mark.parametrize("text, expected", [
    ("0", 0),
    ("512", 512),
    ("10b", 10),
    ("1k", 1024),
    ("1K", 1024),
    ("4m", 4 * 1024 ** 2),
    ("4mb", 4 * 1024 ** 2),
    ("4MiB", 4 * 1024 ** 2),
    ("1g", 1024 ** 3),
    ("1.5g", 1536 * 1024 ** 2),
    ("2 g", 2 * 1024 ** 3),
    ("1t", 1024 ** 4),
    ("1p", 1024 ** 5),
])
def test_memory_size_values(text, expected):
    assert flags.parse_memory_size(text) == expected


@pytest.mark.parametrize("text", ["", "12q", "-1", "m", "1..5m", "1.2.3m", "1e3", " 5m", "5 m b"])
def test_memory_size_rejects(text):
    with pytest.raises(InvalidArgument, match=r"invalid size: '"):
        flags.parse_memory_size(text)


def test_memory_flag_error_names_flag_and_value():
    assert error_for("-m", "12q", "img") == 'invalid argument "12q" for "-m, --memory" flag: invalid size: \'12q\''


def test_memory_swap_unlimited():
    assert flags.parse_memory_swap("-1") == -1
    assert flags.parse_memory_swap("1g") == 1024 ** 3
    with pytest.raises(InvalidArgument):
        flags.parse_memory_swap("-2")


@given(st.integers(min_value=0, max_value=2 ** 40), st.sampled_from(["", "b", "k", "m", "g", "K", "M", "G"]),
       st.sampled_from(["", "i", "ib", "b"]))
def test_memory_size_property(number, unit, suffix):
    if not unit and suffix:
        suffix = "b" if "b" in suffix else ""
    if unit.lower() == "b":
        suffix = ""
    multiplier = {"": 1, "b": 1, "k": 1024, "m": 1024 ** 2, "g": 1024 ** 3}[unit.lower()]
    assert flags.parse_memory_size(f"{number}{unit}{suffix}") == number * multiplier


@given(st.text(alphabet="0123456789.kmgbiKMGBI -xq", max_size=8))
def test_memory_size_never_crashes(text):
    try:
        value = flags.parse_memory_size(text)
    except InvalidArgument:
        return
    assert value >= 0


# -- CPUs and integers ------------------------------------------------------------------------------


@pytest.mark.parametrize("text, expected", [("1", 10 ** 9), ("0.5", 5 * 10 ** 8), ("1.5", 15 * 10 ** 8),
                                            ("0.000000001", 1), ("2", 2 * 10 ** 9)])
def test_nano_cpus(text, expected):
    assert flags.parse_nano_cpus(text) == expected


def test_nano_cpus_errors():
    with pytest.raises(InvalidArgument, match="failed to parse abc as a rational number"):
        flags.parse_nano_cpus("abc")
    with pytest.raises(InvalidArgument, match="value is too precise"):
        flags.parse_nano_cpus("0.0000000001")
    assert error_for("--cpus", "x", "img").startswith('invalid argument "x" for "--cpus" flag:')


def test_pids_limit_and_shares():
    host = body_for("--pids-limit", "100", "-c", "512", "--cpuset-cpus", "0-1,3", "img")["HostConfig"]
    assert host["PidsLimit"] == 100
    assert host["CpuShares"] == 512
    assert host["CpusetCpus"] == "0-1,3"
    assert "PidsLimit" not in body_for("--pids-limit", "0", "img")["HostConfig"]
    assert body_for("--pids-limit", "-1", "img")["HostConfig"]["PidsLimit"] == -1
    assert 'for "--pids-limit" flag' in error_for("--pids-limit", "ten", "img")
    assert 'for "--cpuset-cpus" flag' in error_for("--cpuset-cpus", "a-b", "img")


# -- ulimits ---------------------------------------------------------------------------------------


def test_ulimit_soft_and_hard():
    assert flags.parse_ulimit("nofile=1024:2048") == {"Name": "nofile", "Soft": 1024, "Hard": 2048}
    assert flags.parse_ulimit("nproc=100") == {"Name": "nproc", "Soft": 100, "Hard": 100}
    assert flags.parse_ulimit("core=-1") == {"Name": "core", "Soft": -1, "Hard": -1}


@pytest.mark.parametrize("text, message", [
    ("nofile", "invalid ulimit argument: nofile"),
    ("files=10", "invalid ulimit type: files"),
    ("nofile=2048:1024", "ulimit soft limit must be less than or equal to hard limit: 2048 > 1024"),
    ("nofile=a", 'parsing "a": invalid syntax'),
    ("nofile=1:2:3", "too many limit value arguments"),
])
def test_ulimit_errors(text, message):
    with pytest.raises(InvalidArgument, match=message):
        flags.parse_ulimit(text)


@given(st.sampled_from(sorted(flags.ULIMIT_NAMES)), st.integers(0, 2 ** 40), st.integers(0, 2 ** 40))
def test_ulimit_property(name, first, second):
    soft, hard = min(first, second), max(first, second)
    assert flags.parse_ulimit(f"{name}={soft}:{hard}") == {"Name": name, "Soft": soft, "Hard": hard}


def test_ulimit_later_flag_wins():
    host = body_for("--ulimit", "nofile=10:20", "--ulimit", "nproc=5", "--ulimit", "nofile=30", "img")["HostConfig"]
    assert host["Ulimits"] == [{"Name": "nofile", "Soft": 30, "Hard": 30}, {"Name": "nproc", "Soft": 5, "Hard": 5}]


# -- environment and env files ----------------------------------------------------------------------


def test_env_flags():
    body = body_for("-e", "A=1", "-e", "B=x=y", "-e", "HOME", "-e", "UNSET", "-e", "EMPTY=", "img",
                    environ={"HOME": "/root"})
    assert body["Env"] == ["A=1", "B=x=y", "HOME=/root", "EMPTY="]


def test_env_without_name_rejected():
    assert error_for("-e", "=x", "img") == 'invalid argument "=x" for "-e, --env" flag: invalid environment variable: =x'


def test_env_file_parsing():
    data = (b"\xef\xbb\xbf# a comment\n"
            b"\n"
            b"A=1\n"
            b"   B=b=c\n"
            b"C= spaced value  \n"
            b"  # indented comment\n"
            b"FROM_ENV\n"
            b"NOT_SET\n"
            b"D=\r\n")
    entries = flags.parse_key_value_file(data, "env.list", {"FROM_ENV": "caller"})
    assert entries == ["A=1", "B=b=c", "C= spaced value  ", "FROM_ENV=caller", "D="]


def test_env_file_errors():
    with pytest.raises(InvalidArgument, match="variable 'A B' contains whitespaces"):
        flags.parse_key_value_file(b"A B=1\n", "env.list", {})
    with pytest.raises(InvalidArgument, match="no variable name on line '=1'"):
        flags.parse_key_value_file(b"=1\n", "env.list", {})
    with pytest.raises(InvalidArgument, match="invalid utf8 bytes at line 2"):
        flags.parse_key_value_file(b"A=1\nB=\xff\n", "env.list", {})


def test_env_file_flag_then_env_flags(tmp_path):
    env_file = tmp_path / "env.list"
    env_file.write_text("A=from-file\nB=2\n")
    body = body_for("--env-file", str(env_file), "-e", "A=from-flag", "img")
    assert body["Env"] == ["A=from-file", "B=2", "A=from-flag"]


def test_env_file_missing(tmp_path):
    missing = tmp_path / "nope"
    message = error_for("--env-file", str(missing), "img")
    assert message.startswith(f'invalid argument "{missing}" for "--env-file" flag: open {missing}: ')


names = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,8}", fullmatch=True)
values = st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\n\r"), max_size=12)


@given(st.lists(st.tuples(names, values), max_size=8))
def test_env_file_property(pairs):
    data = "".join(f"{name}={value}\n" for name, value in pairs).encode()
    assert flags.parse_key_value_file(data, "env.list", {}) == [f"{name}={value}" for name, value in pairs]


@given(st.lists(st.one_of(st.tuples(names, values), st.just("#comment"), st.just(""), names), max_size=8))
def test_env_file_property_mixed_lines(lines):
    environ = {"SET": "yes"}
    text = ""
    expected = []
    for line in lines:
        if isinstance(line, tuple):
            text += f"  {line[0]}={line[1]}\n"
            expected.append(f"{line[0]}={line[1]}")
        else:
            text += line + "\n"
            if line and not line.startswith("#") and line in environ:
                expected.append(f"{line}={environ[line]}")
    assert flags.parse_key_value_file(text.encode(), "env.list", environ) == expected


# -- labels, entrypoint, identity ---------------------------------------------------------------


def test_labels_from_file_and_flags(tmp_path):
    label_file = tmp_path / "labels"
    label_file.write_text("# labels\na=1\nbare\nb=file\n")
    body = body_for("--label-file", str(label_file), "-l", "b=flag", "--label", "c", "img")
    assert body["Labels"] == {"a": "1", "bare": "", "b": "flag", "c": ""}


def test_entrypoint_empty_resets():
    assert body_for("--entrypoint", "", "img")["Entrypoint"] == [""]
    assert body_for("--entrypoint", "/bin/sh -c", "img")["Entrypoint"] == ["/bin/sh -c"]
    assert "Entrypoint" not in body_for("img")


def test_command_and_identity_flags():
    body = body_for("-h", "box", "-u", "1000:100", "-w", "/srv", "--name", "web", "img", "ls", "-l", "-e")
    assert body["Cmd"] == ["ls", "-l", "-e"]
    assert body["Hostname"] == "box"
    assert body["User"] == "1000:100"
    assert body["WorkingDir"] == "/srv"
    assert body["Image"] == "img"
    assert "Env" not in body


def test_relative_workdir_rejected():
    assert 'for "-w, --workdir" flag' in error_for("-w", "srv", "img")


def test_stdio_flags_foreground_and_detached():
    foreground = body_for("-it", "img")
    assert foreground["Tty"] is True
    assert foreground["OpenStdin"] is True
    assert foreground["AttachStdin"] is True
    assert foreground["StdinOnce"] is True
    assert foreground["AttachStdout"] is True
    detached = body_for("-d", "-i", "img")
    assert detached["OpenStdin"] is True
    assert detached["AttachStdin"] is False
    assert detached["StdinOnce"] is False
    assert detached["AttachStdout"] is False


# -- ports ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("spec, expected", [
    ("8080", [("8080/tcp", {"HostIp": "", "HostPort": ""})]),
    ("8600:8080", [("8080/tcp", {"HostIp": "", "HostPort": "8600"})]),
    ("127.0.0.1:8600:8080", [("8080/tcp", {"HostIp": "127.0.0.1", "HostPort": "8600"})]),
    ("127.0.0.1::8080/udp", [("8080/udp", {"HostIp": "127.0.0.1", "HostPort": ""})]),
    ("[::1]:8600:8080", [("8080/tcp", {"HostIp": "::1", "HostPort": "8600"})]),
    ("::1:8600:8080", [("8080/tcp", {"HostIp": "::1", "HostPort": "8600"})]),
    ("53/UDP", [("53/udp", {"HostIp": "", "HostPort": ""})]),
    ("9000-9001:80-81/sctp", [("80/sctp", {"HostIp": "", "HostPort": "9000"}),
                              ("81/sctp", {"HostIp": "", "HostPort": "9001"})]),
    ("8000-8010:80", [("80/tcp", {"HostIp": "", "HostPort": "8000-8010"})]),
    ("7000-7001", [("7000/tcp", {"HostIp": "", "HostPort": ""}), ("7001/tcp", {"HostIp": "", "HostPort": ""})]),
])
def test_port_specs(spec, expected):
    assert flags.parse_port_spec(spec) == expected


@pytest.mark.parametrize("spec, message", [
    ("abc", "invalid containerPort: abc"),
    ("x:80", "invalid hostPort: x"),
    ("1.2.3:80:80", "invalid IP address: 1.2.3"),
    ("80/icmp", "invalid proto: icmp"),
    ("8000-8002:80-81", "invalid ranges specified for container and host Ports: 80-81 and 8000-8002"),
    ("81-80", "invalid containerPort: 81-80"),
    ("70000", "invalid containerPort: 70000"),
    ("80:", "no port specified: 80:<empty>"),
])
def test_port_spec_errors(spec, message):
    with pytest.raises(InvalidArgument) as caught:
        flags.parse_port_spec(spec)
    assert str(caught.value) == message


def test_ports_in_body():
    body = body_for("-p", "8600:8080", "-p", "127.0.0.1:8601:8080", "-p", "53/udp", "-P", "img")
    assert body["ExposedPorts"] == {"8080/tcp": {}, "53/udp": {}}
    assert body["HostConfig"]["PortBindings"] == {
        "8080/tcp": [{"HostIp": "", "HostPort": "8600"}, {"HostIp": "127.0.0.1", "HostPort": "8601"}],
        "53/udp": [{"HostIp": "", "HostPort": ""}],
    }
    assert body["HostConfig"]["PublishAllPorts"] is True
    assert error_for("-p", "x", "img") == 'invalid argument "x" for "-p, --publish" flag: invalid containerPort: x'


ports = st.integers(0, 65535)
addresses = st.sampled_from(["", "127.0.0.1", "0.0.0.0", "[::1]", "[::]", "10.1.2.3"])
protocols = st.sampled_from(["", "tcp", "udp", "sctp"])


@given(addresses, st.one_of(st.none(), ports), ports, protocols)
def test_port_spec_property(address, host_port, container_port, protocol):
    spec = str(container_port) + (f"/{protocol}" if protocol else "")
    if host_port is not None or address:
        spec = f"{host_port if host_port is not None else ''}:{spec}"
    if address:
        spec = f"{address}:{spec}"
    [(port, binding)] = flags.parse_port_spec(spec)
    assert port == f"{container_port}/{protocol or 'tcp'}"
    assert binding["HostIp"] == address.strip("[]")
    assert binding["HostPort"] == ("" if host_port is None else str(host_port))


@given(st.integers(0, 65000), st.integers(0, 20), st.integers(0, 65000))
def test_port_range_property(start, length, host_start):
    end, host_end = start + length, host_start + length
    mappings = flags.parse_port_spec(f"{host_start}-{host_end}:{start}-{end}")
    assert [port for port, _ in mappings] == [f"{port}/tcp" for port in range(start, end + 1)]
    assert [binding["HostPort"] for _, binding in mappings] == [str(port) for port in range(host_start, host_end + 1)]


# -- volumes, mounts, tmpfs ------------------------------------------------------------------------


def test_volume_forms():
    assert flags.parse_volume("/data") == flags.VolumeSpec("anonymous", "", "/data", "")
    assert flags.parse_volume("/srv:/data") == flags.VolumeSpec("bind", "/srv", "/data", "")
    assert flags.parse_volume("/srv:/data:ro") == flags.VolumeSpec("bind", "/srv", "/data", "ro")
    assert flags.parse_volume("cache:/data:rw,nocopy") == flags.VolumeSpec("volume", "cache", "/data", "rw,nocopy")
    assert flags.parse_volume("./site:/data", cwd="/home/u") == flags.VolumeSpec("bind", "/home/u/site", "/data", "")
    assert flags.parse_volume("/srv:/data:ro,rslave").read_only


@pytest.mark.parametrize("spec, message", [
    ("a:b:c:d", "invalid volume specification: 'a:b:c:d'"),
    (":/data", "invalid volume specification: ':/data'"),
    ("/data:ro", "invalid volume specification: '/data:ro'"),
    ("data", "invalid mount config for type \"volume\": invalid mount path: 'data' mount path must be absolute"),
    ("/srv:data", "invalid mount config for type \"bind\": invalid mount path: 'data' mount path must be absolute"),
    ("/srv:/", "invalid specification: destination can't be '/'"),
    ("/srv:/data:xx", "invalid mode: xx"),
    ("/srv:/data:ro,rw", "invalid mode: ro,rw"),
    ("/srv:/data:nocopy", "invalid mode: nocopy"),
    ("a b:/data", 'create a b: "a b" includes invalid characters for a local volume name'),
])
def test_volume_errors(spec, message):
    with pytest.raises(InvalidArgument) as caught:
        flags.parse_volume(spec)
    assert str(caught.value).startswith(message)


volume_names = st.from_regex(r"[a-zA-Z0-9][a-zA-Z0-9_.-]{1,12}", fullmatch=True)
paths = st.lists(st.from_regex(r"[a-z0-9_.-]{1,8}", fullmatch=True).filter(lambda part: part not in (".", "..")),
                 min_size=1, max_size=4).map(lambda parts: "/" + "/".join(parts))
modes = st.sampled_from(["", "ro", "rw", "ro,z", "rw,rshared", "Z", "private"])


@given(st.one_of(paths, volume_names), paths, modes)
def test_volume_spec_property(source, target, mode):
    text = f"{source}:{target}" + (f":{mode}" if mode else "")
    spec = flags.parse_volume(text)
    assert spec.kind == ("bind" if source.startswith("/") else "volume")
    assert (spec.source, spec.target, spec.mode) == (source, target, mode)
    assert spec.bind_string() == text
    assert spec.read_only == ("ro" in mode.split(","))


def test_volumes_in_body():
    body = body_for("-v", "/srv:/data:ro", "-v", "/anon", "-v", "named:/cache", "img")
    assert body["HostConfig"]["Binds"] == ["/srv:/data:ro", "named:/cache"]
    assert body["Volumes"] == {"/anon": {}}


def test_mount_forms():
    assert flags.parse_mount("type=bind,source=/srv,target=/data,readonly") == {
        "Type": "bind", "Source": "/srv", "Target": "/data", "ReadOnly": True}
    assert flags.parse_mount("src=cache,dst=/cache,volume-nocopy,volume-label=a=b") == {
        "Type": "volume", "Source": "cache", "Target": "/cache",
        "VolumeOptions": {"NoCopy": True, "Labels": {"a": "b"}}}
    assert flags.parse_mount("type=tmpfs,destination=/tmp,tmpfs-size=64m,tmpfs-mode=1770") == {
        "Type": "tmpfs", "Target": "/tmp", "TmpfsOptions": {"SizeBytes": 64 * 1024 ** 2, "Mode": 0o1770}}
    assert flags.parse_mount("type=bind,source=/a,target=/b,ro=false,bind-propagation=rslave") == {
        "Type": "bind", "Source": "/a", "Target": "/b", "ReadOnly": False, "BindOptions": {"Propagation": "rslave"}}
    assert flags.parse_mount('type=bind,"source=/a,b",target=/c')["Source"] == "/a,b"


@pytest.mark.parametrize("spec, message", [
    ("type=bind,source=/a", "target is required"),
    ("type=bind,target=/b", 'invalid mount config for type "bind": field Source must not be empty'),
    ("type=tmpfs,source=x,target=/b", 'invalid mount config for type "tmpfs": field Source must not be specified'),
    ("type=volume,target=/b,bind-propagation=shared", "cannot mix 'bind-*' options with mount type 'volume'"),
    ("type=npipe,target=/b", "mount type 'npipe' is not supported"),
    ("target=/b,colour=red", "unexpected key 'colour' in 'colour=red'"),
    ("target=/b,junk", "invalid field 'junk' must be a key=value pair"),
    ("type=bind,source=rel,target=/b", "invalid mount path: 'rel' mount path must be absolute"),
    ("type=tmpfs,target=/b,tmpfs-size=lots", "invalid size: 'lots'"),
])
def test_mount_errors(spec, message):
    with pytest.raises(InvalidArgument) as caught:
        flags.parse_mount(spec)
    assert message in str(caught.value)


def test_tmpfs_and_read_only():
    host = body_for("--tmpfs", "/run", "--tmpfs", "/tmp:size=64m,mode=1777", "--read-only", "img")["HostConfig"]
    assert host["Tmpfs"] == {"/run": "", "/tmp": "size=64m,mode=1777"}
    assert host["ReadonlyRootfs"] is True
    assert 'for "--tmpfs" flag' in error_for("--tmpfs", "tmp", "img")


# -- security, lifecycle, logging ----------------------------------------------------------------------


def test_capabilities_and_privileges():
    host = body_for("--cap-add", "net_admin", "--cap-add", "ALL", "--cap-drop", "CAP_CHOWN", "--privileged",
                    "--init", "img")["HostConfig"]
    assert host["CapAdd"] == ["CAP_NET_ADMIN", "ALL"]
    assert host["CapDrop"] == ["CAP_CHOWN"]
    assert host["Privileged"] is True
    assert host["Init"] is True


def test_security_opts(tmp_path):
    profile = tmp_path / "profile.json"
    profile.write_text('{\n  "defaultAction": "SCMP_ACT_ALLOW",\n  "syscalls": []\n}\n')
    host = body_for("--security-opt", "no-new-privileges", "--security-opt", "seccomp=unconfined",
                    "--security-opt", f"seccomp={profile}", "img")["HostConfig"]
    assert host["SecurityOpt"][:2] == ["no-new-privileges", "seccomp=unconfined"]
    assert host["SecurityOpt"][2] == 'seccomp={"defaultAction":"SCMP_ACT_ALLOW","syscalls":[]}'
    assert json.loads(host["SecurityOpt"][2].partition("=")[2]) == {"defaultAction": "SCMP_ACT_ALLOW", "syscalls": []}


def test_security_opt_errors(tmp_path):
    missing = tmp_path / "missing.json"
    assert f"opening seccomp profile ({missing}) failed" in error_for("--security-opt", f"seccomp={missing}", "img")
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    assert f"compacting json for seccomp profile ({broken}) failed" in error_for(
        "--security-opt", f"seccomp={broken}", "img")
    assert "invalid --security-opt: 'bogus'" in error_for("--security-opt", "bogus", "img")


@pytest.mark.parametrize("text, expected", [
    ("no", {"Name": "no", "MaximumRetryCount": 0}),
    ("always", {"Name": "always", "MaximumRetryCount": 0}),
    ("unless-stopped", {"Name": "unless-stopped", "MaximumRetryCount": 0}),
    ("on-failure", {"Name": "on-failure", "MaximumRetryCount": 0}),
    ("on-failure:3", {"Name": "on-failure", "MaximumRetryCount": 3}),
])
def test_restart_policies(text, expected):
    assert flags.parse_restart_policy(text) == expected


@pytest.mark.parametrize("text, message", [
    ("sometimes", "invalid restart policy 'sometimes'"),
    ("always:3", "maximum retry count cannot be used with restart policy 'always'"),
    ("on-failure:x", "maximum retry count must be a non-negative integer"),
])
def test_restart_policy_errors(text, message):
    with pytest.raises(InvalidArgument, match=message):
        flags.parse_restart_policy(text)


def test_restart_conflicts_with_rm():
    assert error_for("--rm", "--restart", "always", "img") == "Conflicting options: cannot specify both --restart and --rm"
    assert body_for("--rm", "--restart", "no", "img")["HostConfig"]["AutoRemove"] is True


def test_stop_and_log_flags():
    body = body_for("--stop-signal", "SIGQUIT", "--stop-timeout", "3", "--log-driver", "json-file",
                    "--log-opt", "max-size=10m", "--log-opt", "max-file=2", "img")
    assert body["StopSignal"] == "SIGQUIT"
    assert body["StopTimeout"] == 3
    assert body["HostConfig"]["LogConfig"] == {"Type": "json-file", "Config": {"max-size": "10m", "max-file": "2"}}
    assert "LogConfig" not in body_for("img")["HostConfig"]


def test_log_flag_errors():
    assert error_for("--log-driver", "syslog", "img") == (
        'invalid argument "syslog" for "--log-driver" flag: only the json-file log driver is supported')
    assert "unknown log opt 'tag'" in error_for("--log-opt", "tag=x", "img")
    assert "invalid size: 'big'" in error_for("--log-opt", "max-size=big", "img")
    assert "max-file must be a positive integer" in error_for("--log-opt", "max-file=0", "img")
    assert 'for "--stop-timeout" flag' in error_for("--stop-timeout", "soon", "img")


def test_network_platform_pull():
    args = build_parser().parse_args(["run", "--net", "none", "--platform", "linux/arm64", "--pull", "never", "img"])
    request = flags.build_create_request(args, environ={})
    assert request.body["HostConfig"]["NetworkMode"] == "none"
    assert request.platform == "linux/arm64"
    assert request.pull == "never"
    assert 'invalid argument "sometimes" for "--pull" flag' in error_for("--pull", "sometimes", "img")


def test_defaults_leave_engine_choices_unset():
    body = body_for("img")
    assert body["HostConfig"] == {}
    for key in ("Cmd", "Env", "Labels", "User", "WorkingDir", "Hostname", "ExposedPorts", "Volumes"):
        assert key not in body


# -- log times ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("text, seconds", [("10m", 600), ("1h30m", 5400), ("1.5s", 1.5), ("250ms", 0.25),
                                           ("0", 0), ("-2s", -2)])
def test_go_durations(text, seconds):
    assert flags.parse_go_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "10", "1x", "m", "1h 2m"])
def test_go_duration_errors(text):
    with pytest.raises(InvalidArgument, match="invalid duration"):
        flags.parse_go_duration(text)


def test_log_times():
    now = 1_700_000_000.0
    assert flags.parse_log_time("10m", now) == now - 600
    assert flags.parse_log_time("1700000000", now) == 1_700_000_000
    assert flags.parse_log_time("1700000000.5", now) == 1_700_000_000.5
    assert flags.parse_log_time("2023-11-14T22:13:20Z", now) == 1_700_000_000
    assert flags.parse_log_time("2023-11-14T22:13:20.25Z", now) == 1_700_000_000.25
    assert flags.parse_log_time("2023-11-15T00:13:20+02:00", now) == 1_700_000_000
    with pytest.raises(InvalidArgument, match='failed to parse value as time or duration: "yesterday"'):
        flags.parse_log_time("yesterday", now)


def test_log_time_without_zone_is_local(monkeypatch):
    import time

    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    try:
        assert flags.parse_log_time("2023-11-14", 0) == 1_699_920_000
        assert flags.parse_log_time("2023-11-14T22:13", 0) == 1_700_000_000 - 20
    finally:
        monkeypatch.delenv("TZ")
        time.tzset()


# -- output helpers -----------------------------------------------------------------------------------


def test_command_column_quoting_and_truncation():
    assert go_quote('sh -c "echo hi"') == '"sh -c \\"echo hi\\""'
    assert go_quote("a\tb\x01") == '"a\\tb\\x01"'
    assert ellipsis("sleep 1000000000000000000", 20) == "sleep 1000000000000…"
    assert ellipsis("short", 20) == "short"


def test_ports_column():
    assert format_ports([
        {"PrivatePort": 8080, "Type": "tcp", "IP": "0.0.0.0", "PublicPort": 8600},
        {"PrivatePort": 8080, "Type": "tcp", "IP": "::", "PublicPort": 8600},
        {"PrivatePort": 53, "Type": "udp"},
    ]) == "0.0.0.0:8600->8080/tcp, [::]:8600->8080/tcp, 53/udp"
    assert format_ports(None) == ""


def test_container_rows():
    summary = {
        "Id": "a" * 64, "Names": ["/web", "/other/alias"], "Image": "busybox", "Command": "sleep 1000000000000000000",
        "Created": 1_700_000_000, "Ports": [], "Labels": {"b": "2", "a": "1"}, "State": "running",
        "Status": "Up 3 seconds", "SizeRw": 12, "SizeRootFs": 4_000_000,
    }
    [row] = container_rows([summary], no_trunc=False, now=1_700_000_030)
    assert row["ID"] == "a" * 12
    assert row["Command"] == '"sleep 1000000000000…"'
    assert row["RunningFor"] == "30 seconds ago"
    assert row["Names"] == "web"
    assert row["Labels"] == "a=1,b=2"
    assert row["Size"] == "12B (virtual 4MB)"
    [full] = container_rows([summary], no_trunc=True, now=1_700_000_030)
    assert full["ID"] == "a" * 64
    assert full["Command"] == '"sleep 1000000000000000000"'


# -- stdcopy framing ------------------------------------------------------------------------------------


def frame(stream: int, payload: bytes) -> bytes:
    return bytes([stream, 0, 0, 0]) + len(payload).to_bytes(4, "big") + payload


def test_stdcopy_decoder_split_input():
    data = frame(1, b"out\n") + frame(2, b"err\n") + frame(1, b"") + frame(1, b"x" * 70000)
    decoder = StdcopyDecoder()
    frames = []
    for index in range(0, len(data), 7):
        frames.extend(decoder.feed(data[index:index + 7]))
    assert frames == [(1, b"out\n"), (2, b"err\n"), (1, b""), (1, b"x" * 70000)]
    assert decoder.pending == 0


@given(st.lists(st.tuples(st.sampled_from([1, 2]), st.binary(max_size=40)), max_size=6), st.integers(1, 50))
def test_stdcopy_decoder_property(frames, chunk):
    data = b"".join(frame(stream, payload) for stream, payload in frames)
    decoder = StdcopyDecoder()
    decoded = []
    for index in range(0, len(data), chunk):
        decoded.extend(decoder.feed(data[index:index + chunk]))
    assert decoded == frames


def test_parser_keeps_flags_after_image_for_command():
    args = build_parser().parse_args(["run", "--rm", "img", "sh", "-c", "echo $HOME", "-v"])
    assert args.command == ["sh", "-c", "echo $HOME", "-v"]
    assert args.volume == []
    assert os.path.basename(args.image) == "img"


# -- streaming and signals ------------------------------------------------------------------------------


class SocketAttachment:
    """The attachment interface of the engine over one end of a real socket pair."""

    def __init__(self, sock) -> None:
        self.sock = sock
        self.stdin_closed = False

    def fileno(self) -> int:
        return self.sock.fileno()

    def recv(self, size: int) -> bytes:
        return self.sock.recv(size)

    def write(self, data: bytes) -> None:
        self.sock.sendall(data)

    def close_stdin(self) -> None:
        self.stdin_closed = True
        self.sock.shutdown(socket.SHUT_WR)


def test_pump_routes_frames_and_forwards_stdin(tmp_path):
    import threading

    from dockyard.cli.container_io import pump

    ours, theirs = socket.socketpair()
    attachment = SocketAttachment(ours)
    stdin_path = tmp_path / "stdin"
    stdin_path.write_bytes(b"typed input")
    received = bytearray()

    def container() -> None:
        # Echo what arrives on stdin back as stdout frames, then send a stderr frame and end.
        while True:
            data = theirs.recv(4096)
            if not data:
                break
            received.extend(data)
        theirs.sendall(frame(1, bytes(received)) + frame(2, b"warning\n"))
        theirs.close()

    peer = threading.Thread(target=container)
    peer.start()
    with open(stdin_path, "rb") as stdin, open(tmp_path / "out", "wb") as stdout, open(tmp_path / "err", "wb") as stderr:
        pump(attachment, tty=False, stdin=stdin, stdout=stdout, stderr=stderr)
    peer.join(timeout=10)
    ours.close()
    assert attachment.stdin_closed
    assert bytes(received) == b"typed input"
    assert (tmp_path / "out").read_bytes() == b"typed input"
    assert (tmp_path / "err").read_bytes() == b"warning\n"


def test_pump_tty_output_is_raw(tmp_path):
    from dockyard.cli.container_io import pump

    ours, theirs = socket.socketpair()
    theirs.sendall(b"\x01\x00\x00\x00raw bytes")
    theirs.close()
    with open(tmp_path / "out", "wb") as stdout, open(tmp_path / "err", "wb") as stderr:
        pump(SocketAttachment(ours), tty=True, stdin=None, stdout=stdout, stderr=stderr)
    ours.close()
    assert (tmp_path / "out").read_bytes() == b"\x01\x00\x00\x00raw bytes"
    assert (tmp_path / "err").read_bytes() == b""


def test_signal_proxy_forwards_by_name():
    import signal

    from dockyard.cli.container_io import SignalProxy

    forwarded: list[str] = []
    resized: list[bool] = []
    previous = signal.getsignal(signal.SIGUSR1)
    with SignalProxy(forwarded.append, lambda: resized.append(True)) as proxy:
        os.kill(os.getpid(), signal.SIGUSR1)
        os.kill(os.getpid(), signal.SIGWINCH)
        assert os.read(proxy.pipe.read_fd, 16)
        proxy.handle()
    assert forwarded == ["USR1"]
    assert resized == [True]
    assert signal.getsignal(signal.SIGUSR1) == previous


def test_log_time_formatting_and_tail():
    from dockyard.cli.container import format_log_time, parse_tail

    assert format_log_time(1_700_000_000.5) == "2023-11-14T22:13:20.500000000Z"
    assert format_log_time("2023-11-14T22:13:20.123456789Z") == "2023-11-14T22:13:20.123456789Z"
    assert parse_tail("all") is None
    assert parse_tail("3") == 3
    assert parse_tail("-1") is None
    with pytest.raises(InvalidArgument, match='invalid argument "x" for "-n, --tail" flag'):
        parse_tail("x")


def test_more_resource_and_identity_flags():
    body = body_for("--memory-reservation", "32m", "--shm-size", "128m", "--oom-score-adj", "-500",
                    "--cpu-period", "100000", "--cpu-quota", "50000", "--cpuset-mems", "0",
                    "--sysctl", "net.ipv4.ip_forward=1", "--group-add", "audio", "--group-add", "1234",
                    "--domainname", "example.org", "--expose", "80", "--expose", "7000-7001/udp", "img")
    host = body["HostConfig"]
    assert host["MemoryReservation"] == 32 * 1024 ** 2
    assert host["ShmSize"] == 128 * 1024 ** 2
    assert host["OomScoreAdj"] == -500
    assert host["CpuPeriod"] == 100000
    assert host["CpuQuota"] == 50000
    assert host["CpusetMems"] == "0"
    assert host["Sysctls"] == {"net.ipv4.ip_forward": "1"}
    assert host["GroupAdd"] == ["audio", "1234"]
    assert body["Domainname"] == "example.org"
    assert body["ExposedPorts"] == {"80/tcp": {}, "7000/udp": {}, "7001/udp": {}}
    assert "PortBindings" not in host


def test_more_flag_errors():
    assert "range for oom score adj is [-1000, 1000]" in error_for("--oom-score-adj", "2000", "img")
    assert 'for "--sysctl" flag' in error_for("--sysctl", "novalue", "img")
    assert "invalid port format for --expose: 8080:80" in error_for("--expose", "8080:80", "img")
    assert 'for "--cpuset-mems" flag' in error_for("--cpuset-mems", "x", "img")


# -- detach keys ------------------------------------------------------------------------------------------


def test_detach_keys_parsing():
    assert flags.parse_detach_keys("ctrl-p,ctrl-q") == b"\x10\x11"
    assert flags.parse_detach_keys("a,ctrl-x") == b"a\x18"
    assert flags.parse_detach_keys("ctrl-@,ctrl-[,ctrl-\\,ctrl-],ctrl-^,ctrl-_") == b"\x00\x1b\x1c\x1d\x1e\x1f"
    with pytest.raises(InvalidArgument, match="unknown key 'ctrl-1'"):
        flags.parse_detach_keys("ctrl-1")
    with pytest.raises(InvalidArgument, match='invalid argument "alt-x" for "--detach-keys" flag'):
        flags.detach_sequence("alt-x")


def test_escape_scanner_cases():
    from dockyard.cli.container_io import EscapeScanner

    scanner = EscapeScanner(b"\x10\x11")
    assert scanner.feed(b"ls\r") == (b"ls\r", False)
    assert scanner.feed(b"a\x10") == (b"a", False)
    assert scanner.feed(b"b") == (b"\x10b", False)
    assert scanner.feed(b"\x10\x10") == (b"\x10", False)
    assert scanner.feed(b"\x11rest") == (b"", True)


@given(st.binary(max_size=40), st.integers(1, 8))
def test_escape_scanner_property(data, chunk):
    from dockyard.cli.container_io import EscapeScanner

    sequence = b"\x10\x11"
    scanner = EscapeScanner(sequence)
    forwarded = b""
    detached = False
    for index in range(0, len(data), chunk):
        output, detached = scanner.feed(data[index:index + chunk])
        forwarded += output
        if detached:
            break
    if sequence in data:
        assert detached
        assert forwarded == data[:data.index(sequence)]
    else:
        assert not detached
        held = data[len(data) - scanner.matched:]
        assert forwarded + held == data
