"""OCI bundles for runtime tests: a busybox root filesystem and a config.json per test.

The root filesystem contains Debian's static busybox (package busybox-static) at
/bin/busybox and a symlink for every applet it lists, so ``sh``, ``cat``,
``mount`` and the rest work inside the container.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

BUSYBOX = Path("/usr/bin/busybox")


def build_rootfs(target: Path) -> Path:
    """Create a busybox root filesystem in ``target`` and return it."""
    if not BUSYBOX.exists():
        pytest.skip(f"{BUSYBOX} is missing: install the busybox-static package")
    (target / "bin").mkdir(parents=True)
    shutil.copy2(BUSYBOX, target / "bin" / "busybox")
    applets = subprocess.run([str(BUSYBOX), "--list-full"], capture_output=True, text=True, check=True).stdout
    for applet in applets.split():
        link = target / applet
        if link.name == "busybox" or link.exists() or link.is_symlink():
            continue
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to("/bin/busybox")
    for directory in ("proc", "sys", "dev", "tmp", "etc", "root", "home/user"):
        (target / directory).mkdir(parents=True, exist_ok=True)
    (target / "tmp").chmod(0o1777)
    (target / "etc" / "passwd").write_text("root:x:0:0:root:/root:/bin/sh\nuser:x:1000:1000:user:/home/user:/bin/sh\n")
    (target / "etc" / "group").write_text("root:x:0:\nuser:x:1000:\n")
    (target / "etc" / "not-executable").write_text("#!/bin/sh\necho never\n")
    return target


@pytest.fixture(scope="session")
def busybox_rootfs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A busybox root filesystem shared by the session; bundles copy it."""
    return build_rootfs(tmp_path_factory.mktemp("busybox") / "rootfs")


BundleFactory = Callable[..., Path]


@pytest.fixture
def make_bundle(busybox_rootfs: Path, tmp_path: Path) -> Iterator[BundleFactory]:
    """Return a function that writes a bundle with Docker's default spec, changed by ``edit``.

    ``make_bundle(["sh", "-c", "echo hi"], edit=lambda config: ...)`` copies
    the busybox rootfs, so a container may write to it freely. The cgroup
    path is relative, below the test process's own cgroup in every hierarchy.
    """
    from dockyard.runtime import spec

    counter = 0

    def make(args: list[str], edit: Callable[[dict[str, Any]], None] | None = None) -> Path:
        nonlocal counter
        counter += 1
        bundle = tmp_path / f"bundle{counter}"
        bundle.mkdir()
        shutil.copytree(busybox_rootfs, bundle / "rootfs", symlinks=True)
        config = spec.default_spec(args)
        # The test process's PID keeps concurrent test runs out of each other's cgroups.
        config["linux"]["cgroupsPath"] = f"dockyard-test/{os.getpid()}-{tmp_path.name}-{counter}"
        if edit is not None:
            edit(config)
        (bundle / "config.json").write_text(json.dumps(config, indent=2))
        return bundle

    yield make


@pytest.fixture
def state_root(tmp_path: Path) -> Path:
    root = tmp_path / "state"
    root.mkdir()
    return root
