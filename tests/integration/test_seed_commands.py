"""The seed's two commands, verbatim, through the docker CLI and dockyard's API socket.

The game image is built with `dockyard build` and pushed to the test registry
as `pengbai/docker-supermario`. The API service's configuration makes that
registry the only mirror of docker.io, so nothing reaches Docker Hub.
"""

from __future__ import annotations

import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.support.api import ApiService
from tests.support.cli import Dockyard
from tests.support.images import ImageSet

GAME = Path(__file__).resolve().parents[2] / "examples" / "supermario"


@pytest.fixture
def game_in_registry(busybox_dockyard: Dockyard, test_images: ImageSet) -> str:
    target = f"{test_images.host}/pengbai/docker-supermario:latest"
    busybox_dockyard.run("build", "-q", "-t", target, "--build-arg", f"BASE={test_images.busybox}", str(GAME))
    busybox_dockyard.run("push", target)
    return target


def fetch_page(url: str, timeout: float = 10.0) -> bytes:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                return response.read()
        except (urllib.error.URLError, ConnectionError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def test_seed_commands_serve_the_game(docker_api: ApiService, game_in_registry: str) -> None:
    pulled = docker_api.docker("pull", "pengbai/docker-supermario")
    assert "docker.io/pengbai/docker-supermario:latest" in pulled.stdout
    container = docker_api.docker("run", "-d", "-p", "8600:8080", "pengbai/docker-supermario").stdout.strip()
    try:
        page = fetch_page("http://127.0.0.1:8600/")
        assert b"<canvas" in page
        assert docker_api.docker("inspect", "--format", "{{.Config.User}}", container).stdout.strip() == "mario"
        user = docker_api.docker("exec", container, "id", "-un").stdout.strip()
        assert user == "mario"
    finally:
        docker_api.docker("rm", "-f", container, check=False)
