"""docker-compose 1.29 (Debian's, Python) against ``dockyard system service``.

The app has two services on the project's own network: ``web`` serves a
file with busybox httpd, and ``client`` fetches it by the service name,
which the embedded DNS resolves on that network.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Iterator

import pytest

from tests.support.api import COMMAND_TIMEOUT, ApiService
from tests.support.containers import wait_until

DOCKER_COMPOSE = shutil.which("docker-compose")

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(DOCKER_COMPOSE is None, reason="docker-compose is not installed (apt-get install docker-compose)"),
]

PROJECT = "dyweb"
PAGE = "hello-from-web"

COMPOSE_FILE = f"""\
version: "3.8"
services:
  web:
    image: busybox
    command: ["sh", "-c", "mkdir -p /www && echo {PAGE} > /www/index.html && exec httpd -f -p 8080 -h /www"]
    labels:
      role: server
  client:
    image: busybox
    depends_on: [web]
    command:
      - sh
      - -c
      - "for attempt in 1 2 3 4 5 6 7 8 9 10; do wget -qO- http://web:8080/ && exit 0; sleep 1; done; exit 1"
"""


class Compose:
    def __init__(self, service: ApiService, directory: Path) -> None:
        self.service = service
        self.directory = directory

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        assert DOCKER_COMPOSE is not None
        env = self.service.client_env()
        env.pop("COMPOSE_API_VERSION", None)
        result = subprocess.run([DOCKER_COMPOSE, "--no-ansi", "-p", PROJECT, *args], cwd=self.directory, env=env,
                                capture_output=True, text=True, timeout=COMMAND_TIMEOUT)
        if check and result.returncode != 0:
            pytest.fail(f"docker-compose {' '.join(args)} exited with {result.returncode}\n"
                        f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}\n"
                        f"service log (tail):\n{self.service.log()[-4000:]}")
        return result


@pytest.fixture
def compose(docker_api: ApiService, tmp_path: Path) -> Iterator[Compose]:
    (tmp_path / "docker-compose.yml").write_text(COMPOSE_FILE)
    project = Compose(docker_api, tmp_path)
    try:
        yield project
    finally:
        project.run("down", "--remove-orphans", "--volumes", "--rmi", "local", check=False)


def test_compose_up_ps_logs_down(compose: Compose, docker_api: ApiService) -> None:
    compose.run("up", "-d")

    web_state = docker_api.docker("inspect", "-f", "{{.State.Status}}", f"{PROJECT}_web_1").stdout.strip()
    assert web_state == "running"
    network_names = docker_api.docker("network", "ls", "--format", "{{.Name}}").stdout.split()
    assert f"{PROJECT}_default" in network_names

    def client_exited() -> bool:
        state = docker_api.docker("inspect", "-f", "{{.State.Status}}", f"{PROJECT}_client_1").stdout.strip()
        return state == "exited"

    assert wait_until(client_exited, timeout=30), compose.run("logs", check=False).stdout
    exit_code = docker_api.docker("inspect", "-f", "{{.State.ExitCode}}", f"{PROJECT}_client_1").stdout.strip()
    assert exit_code == "0", compose.run("logs", "client", check=False).stdout

    listed = compose.run("ps").stdout
    assert f"{PROJECT}_web_1" in listed
    assert f"{PROJECT}_client_1" in listed
    assert compose.run("ps", "-q", "web").stdout.strip()

    logs = compose.run("logs", "--no-color", "client").stdout
    assert PAGE in logs

    # A one-off container of the client service joins the same network and resolves web too.
    one_off = compose.run("run", "--rm", "-T", "client", "wget", "-qO-", "http://web:8080/")
    assert one_off.stdout.strip() == PAGE

    compose.run("down")
    remaining = docker_api.docker("ps", "-a", "--filter", f"label=com.docker.compose.project={PROJECT}", "-q").stdout
    assert remaining.strip() == ""
    network_names = docker_api.docker("network", "ls", "--format", "{{.Name}}").stdout.split()
    assert f"{PROJECT}_default" not in network_names


BUILT_FILE = """\
version: "3.8"
services:
  greeter:
    build:
      context: ./greeter
      args:
        GREETING: built-by-compose
  web:
    image: busybox
    command: ["sh", "-c", "mkdir -p /www && echo {page} > /www/index.html && exec httpd -f -p 8080 -h /www"]
  fetcher:
    image: busybox
    depends_on: [web, greeter]
    command: ["sh", "-c", "sleep 1; wget -qO- http://web:8080/ && exit 7"]
"""


def test_compose_build_and_foreground_up(compose: Compose, docker_api: ApiService) -> None:
    greeter = compose.directory / "greeter"
    greeter.mkdir()
    (greeter / "Dockerfile").write_text('FROM busybox\nARG GREETING\nRUN echo "$GREETING" > /greeting\n'
                                        'CMD ["sh", "-c", "cat /greeting; exec sleep 300"]\n')
    (compose.directory / "docker-compose.yml").write_text(BUILT_FILE.format(page=PAGE))

    built = compose.run("build")
    assert "Successfully tagged dyweb_greeter:latest" in built.stdout + built.stderr

    # In the foreground, compose attaches to every service and follows the project's events.
    # --exit-code-from stops the project when any container exits (fetcher is the only one that does)
    # and returns fetcher's exit code.
    result = compose.run("up", "--exit-code-from", "fetcher", check=False)
    assert result.returncode == 7, f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    assert PAGE in result.stdout
    assert "built-by-compose" in result.stdout

    # "--rmi local" removes the images compose named itself, those of services without an image key.
    compose.run("down", "--rmi", "local")
    missing = docker_api.docker("image", "inspect", "dyweb_greeter", check=False)
    assert missing.returncode != 0


PUBLISHED_FILE = """\
version: "3.8"
services:
  web:
    image: busybox
    command: ["sh", "-c", "mkdir -p /www && echo {page} > /www/index.html && exec httpd -f -p 8080 -h /www"]
    ports: ["127.0.0.1:{port}:8080"]
    environment:
      MODE: published
    volumes: ["data:/data"]
volumes:
  data: {{}}
"""


def test_compose_ports_exec_restart(compose: Compose, docker_api: ApiService) -> None:
    import socket
    import urllib.request

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    (compose.directory / "docker-compose.yml").write_text(PUBLISHED_FILE.format(page=PAGE, port=port))
    compose.run("up", "-d")

    def fetch() -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as response:
            return response.read().decode()

    def serves() -> bool:
        try:
            return PAGE in fetch()
        except OSError:
            return False

    assert wait_until(serves, timeout=15)
    assert compose.run("port", "web", "8080").stdout.strip() == f"127.0.0.1:{port}"
    executed = compose.run("exec", "-T", "web", "sh", "-c", 'echo "$MODE" > /data/mode; cat /data/mode')
    assert executed.stdout.strip() == "published"

    # httpd as PID 1 ignores SIGTERM, so a short timeout keeps the test fast.
    compose.run("stop", "-t", "1")
    stopped = docker_api.docker("inspect", "-f", "{{.State.Status}}", f"{PROJECT}_web_1").stdout.strip()
    assert stopped == "exited"
    compose.run("start")
    assert wait_until(serves, timeout=15)
    compose.run("restart", "-t", "1", "web")
    assert wait_until(serves, timeout=15)
    kept = compose.run("exec", "-T", "web", "cat", "/data/mode")
    assert kept.stdout.strip() == "published"

    compose.run("down", "-v")
    volumes = docker_api.docker("volume", "ls", "-q").stdout.split()
    assert f"{PROJECT}_data" not in volumes
