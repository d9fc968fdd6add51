"""The engine façade: the one object the CLI and the API server call.

``Engine(config)`` opens nothing until a service is used, so that commands
that need only part of the engine pay only for that part.
"""

from __future__ import annotations

from functools import cached_property
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from dockyard.config import Config
    from dockyard.engine.containers import ContainerService
    from dockyard.engine.images import ImageService
    from dockyard.engine.state import State
    from dockyard.engine.volumes import VolumeService
    from dockyard.network.service import NetworkService


class Engine:
    def __init__(self, config: "Config") -> None:
        self.config = config
        self.root = config.root

    @cached_property
    def state(self) -> "State":
        from dockyard.engine.state import State

        return State(self.root / "state.db")

    @cached_property
    def images(self) -> "ImageService":
        from dockyard.engine.images import ImageService

        return ImageService(self.config, self.state)

    @cached_property
    def volumes(self) -> "VolumeService":
        from dockyard.engine.volumes import VolumeService

        return VolumeService(self.config, self.state)

    @cached_property
    def containers(self) -> "ContainerService":
        from dockyard.engine.containers import ContainerService

        return ContainerService(self.config, self.state, self.images, self.volumes, lambda: self.networks)

    @cached_property
    def networks(self) -> "NetworkService":
        from dockyard.network.service import NetworkService

        return NetworkService(self.config, self.state)

    def close(self) -> None:
        if "state" in self.__dict__:
            self.state.close()
