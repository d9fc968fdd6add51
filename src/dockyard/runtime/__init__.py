"""dockyard's OCI runtime: runs an OCI bundle (a rootfs and config.json), like runc.

The library API is in ``dockyard.runtime.container`` (create, start, state,
kill, delete, run, pause, resume); ``dockyard.runtime.cli`` is the
runc-compatible ``dockyard-runtime`` command.
"""
