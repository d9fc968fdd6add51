"""Starting a process that no other process waits for: fork, setsid, fork again.

This module imports only ``os``, because the ``dockyard`` client
(``cli/client.py``) uses it and keeps its start-up to built-in modules.
"""

from __future__ import annotations

import os
from typing import Callable


def run_detached(body: Callable[[], object]) -> None:
    """Run ``body`` in a grandchild with a session of its own; return once the child in between has exited.

    The grandchild has no parent to wait for it, so init or the nearest
    subreaper reaps it, and it has no controlling terminal. ``body`` should
    exec or end the process itself: when it returns or raises, the grandchild
    exits with status 127.
    """
    first = os.fork()
    if first:
        os.waitpid(first, 0)
        return
    try:
        os.setsid()
        if os.fork():
            os._exit(0)
        body()
    finally:
        os._exit(127)
