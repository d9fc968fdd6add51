"""Run the installed ``dockyard`` command as a user would, against a private root.

The fixture ``dockyard`` gives a ``Dockyard`` with its own state root,
config file and Docker config directory (for credentials), all in a
temporary directory that is removed afterwards. ``dockyard.another()`` makes
a second, independent one, for checks such as "pull into a fresh root".

Unless the config text has a ``[network]`` table, each installation gets a
default bridge, subnet and nftables table of its own. The table has a rule
that drops forwarded traffic leaving through the machine's uplink, and the
embedded DNS server has no upstream servers. ``remove`` deletes all of it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import pytest

# The console script installed next to the Python running the tests (the project's venv).
DOCKYARD = Path(sys.executable).with_name("dockyard")
COMMAND_TIMEOUT = 120


@dataclass
class Dockyard:
    """One private dockyard installation: a state root, a config file and a Docker config directory."""

    base: Path
    config_text: str = ""
    others: list["Dockyard"] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        self.docker_config.mkdir(parents=True, exist_ok=True)
        # A private run root, so that bundles, monitor directories and exec records
        # go away with the test's directory. TOML wants top-level keys before tables.
        self.config_path.write_text(f'run_root = "{self.base / "run"}"\n' + self.config_text)
        self.nft_table = ""
        if "[network]" not in self.config_text:
            self._add_private_network()

    def _add_private_network(self) -> None:
        import secrets

        from dockyard.network import netlink
        from dockyard.network.nat import Table
        from tests.support.network import _free_subnet

        token = secrets.token_hex(3)
        self.nft_table = f"dockyard_cli_{token}"
        with self.config_path.open("a") as file:
            file.write(
                f'\n[network]\ndefault_subnet = "{_free_subnet()}"\nbridge = "dyc{token}"\n'
                # No upstream servers: names the embedded DNS server does not know fail at once, on the machine.
                f'nft_table = "{self.nft_table}"\ndns_upstreams = []\n'
            )
        uplink = netlink.uplink()
        if uplink is not None:
            Table(self.nft_table).add_uplink_guard(uplink)

    def _remove_networks(self) -> None:
        """Delete the bridges, veths and rules of this root's networks, and its nftables table."""
        from dockyard import config as config_module
        from dockyard.engine.state import State
        from dockyard.network import netlink
        from dockyard.network.nat import Table
        from dockyard.network.service import NetworkService

        if (self.root / "state.db").exists():
            state = State(self.root / "state.db")
            try:
                NetworkService(config_module.load(path=self.config_path, root=self.root), state).teardown()
                for row in state.networks():
                    netlink.delete_link(row["bridge"])
            finally:
                state.close()
        if self.nft_table:
            Table(self.nft_table).delete()

    @property
    def root(self) -> Path:
        return self.base / "root"

    @property
    def config_path(self) -> Path:
        return self.base / "config.toml"

    @property
    def docker_config(self) -> Path:
        return self.base / "docker-config"

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update({
            "DOCKYARD_ROOT": str(self.root),
            "DOCKYARD_CONFIG": str(self.config_path),
            "DOCKER_CONFIG": str(self.docker_config),
        })
        env.pop("DOCKYARD_DEBUG", None)
        return env

    def popen(self, *args: str, **kwargs: object) -> subprocess.Popen:
        return subprocess.Popen(
            [str(DOCKYARD), *args], env=self.env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kwargs
        )

    def run(self, *args: str, input: bytes | str | None = None, check: bool = True) -> subprocess.CompletedProcess:
        """Run ``dockyard ARGS`` and return the result; with ``check``, fail the test on a non-zero exit."""
        text = not isinstance(input, bytes)
        if input is None:
            input = ""
        result = subprocess.run(
            [str(DOCKYARD), *args],
            env=self.env(),
            input=input,
            capture_output=True,
            text=text,
            timeout=COMMAND_TIMEOUT,
        )
        if check and result.returncode != 0:
            pytest.fail(
                f"dockyard {' '.join(args)} exited with {result.returncode}\n"
                f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}"
            )
        return result

    def image_ids(self) -> list[str]:
        """Return the full ID of every image once, in the order ``images -q --no-trunc`` prints them.

        That command prints one line per tag, so an image with two tags appears twice there.
        """
        return list(dict.fromkeys(self.run("images", "-q", "--no-trunc").stdout.split()))

    def blobs(self) -> set[str]:
        directory = self.root / "blobs" / "sha256"
        return {f"sha256:{path.name}" for path in directory.iterdir()} if directory.exists() else set()

    def snapshots(self) -> set[str]:
        directory = self.root / "snapshots"
        return {f"sha256:{path.name}" for path in directory.iterdir()} if directory.exists() else set()

    def another(self, config_text: str | None = None) -> "Dockyard":
        other = Dockyard(Path(tempfile.mkdtemp(prefix="dockyard-cli-", dir=self.base.parent)),
                         self.config_text if config_text is None else config_text)
        self.others.append(other)
        return other

    def remove(self) -> None:
        for other in self.others:
            other.remove()
        try:
            self._remove_networks()
        finally:
            shutil.rmtree(self.base, ignore_errors=True)


@pytest.fixture
def dockyard() -> Iterator[Dockyard]:
    """A private dockyard root, config and credentials directory, removed after the test."""
    instance = Dockyard(Path(tempfile.mkdtemp(prefix="dockyard-cli-")))
    try:
        yield instance
    finally:
        instance.remove()
