#!/usr/bin/env bash
# Show dockyard pulling an image: start a registry on 127.0.0.1, push the
# busybox test image to it, then run `dockyard pull` and `dockyard images`.
#
# Everything lives in a temporary directory that is removed at the end,
# dockyard's state included (DOCKYARD_ROOT), so the machine's
# /var/lib/dockyard is never touched.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup.sh

workdir=$(mktemp -d -t dockyard-demo.XXXXXX)
registry_pid=
cleanup() {
    if [[ -n $registry_pid ]]; then
        kill "$registry_pid" 2>/dev/null || true
        wait "$registry_pid" 2>/dev/null || true
    fi
    rm -rf "$workdir"
}
trap cleanup EXIT

port=$(.venv/bin/python -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
host=127.0.0.1:$port
cat >"$workdir/registry.yml" <<CONFIG
version: 0.1
log:
  level: error
storage:
  filesystem:
    rootdirectory: $workdir/registry
http:
  addr: $host
CONFIG

echo "== starting a registry on $host"
docker-registry serve "$workdir/registry.yml" >"$workdir/registry.log" 2>&1 &
registry_pid=$!
for _ in $(seq 100); do
    if curl -fs "http://$host/v2/" >/dev/null; then
        break
    fi
    if ! kill -0 "$registry_pid" 2>/dev/null; then
        echo "demo.sh: the registry exited; its log:" >&2
        cat "$workdir/registry.log" >&2
        exit 1
    fi
    sleep 0.1
done

echo "== building the busybox test image and pushing it with skopeo"
.venv/bin/python -m tests.support.images push "$host" busybox

export DOCKYARD_ROOT=$workdir/root
export DOCKYARD_RUN_ROOT=$workdir/run
echo "== dockyard pull $host/test/busybox:latest"
.venv/bin/dockyard pull "$host/test/busybox:latest"
echo "== dockyard images"
.venv/bin/dockyard images
