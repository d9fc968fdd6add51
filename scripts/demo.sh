#!/usr/bin/env bash
# The demo: start a registry on 127.0.0.1, push a busybox image to it, pull it
# with dockyard, build the demo game's image with `dockyard build`, and run it
# with `dockyard run -d -p 8600:8080`. The game stays up at http://localhost:8600.
#
#   bash scripts/demo.sh          set up and start the game
#   bash scripts/demo.sh --stop   remove the game's container and dockyard's demo state
#
# dockyard's state for the demo lives in /var/tmp/dockyard-demo (DOCKYARD_ROOT
# and DOCKYARD_RUN_ROOT), so the machine's /var/lib/dockyard is never touched.
# The registry is only needed for the pull, and is stopped before the script ends.
set -euo pipefail
cd "$(dirname "$0")/.."

demo=/var/tmp/dockyard-demo
export DOCKYARD_ROOT=$demo/root
export DOCKYARD_RUN_ROOT=$demo/run
export DOCKYARD_CONFIG=$demo/config.toml
dockyard=.venv/bin/dockyard
port=${DEMO_PORT:-8600}

if [[ ${1-} == --stop ]]; then
    if [[ -x $dockyard && -d $demo ]]; then
        "$dockyard" rm -f supermario >/dev/null 2>&1 || true
        "$dockyard" rmi -f supermario >/dev/null 2>&1 || true
        "$dockyard" image prune -a -f >/dev/null 2>&1 || true
    fi
    rm -rf "$demo"
    echo "demo.sh: the game and the demo's state are removed"
    exit 0
elif [[ $# -gt 0 ]]; then
    echo "demo.sh: unknown option $1 (known: --stop)" >&2
    exit 2
fi

bash scripts/setup.sh
mkdir -p "$demo"
: >"$DOCKYARD_CONFIG"

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

registry_port=$(.venv/bin/python -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
host=127.0.0.1:$registry_port
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

echo "== building a busybox image offline and pushing it with skopeo"
.venv/bin/python -m tests.support.images push "$host" busybox

echo "== dockyard pull $host/test/busybox:latest"
"$dockyard" pull "$host/test/busybox:latest"
echo "== dockyard images"
"$dockyard" images

echo "== dockyard build -t supermario examples/supermario"
"$dockyard" build -t supermario --build-arg "BASE=$host/test/busybox:latest" examples/supermario

echo "== dockyard run -d -p $port:8080 supermario"
"$dockyard" rm -f supermario >/dev/null 2>&1 || true
"$dockyard" run -d -p "$port:8080" --name supermario supermario
for _ in $(seq 50); do
    if curl -fs -o /dev/null "http://127.0.0.1:$port/"; then
        break
    fi
    sleep 0.1
done
curl -fs -o /dev/null "http://127.0.0.1:$port/" || {
    echo "demo.sh: the game does not respond on 127.0.0.1:$port; its log:" >&2
    "$dockyard" logs supermario >&2 || true
    exit 1
}
"$dockyard" ps
echo
echo "The game is running: open http://localhost:$port"
echo "Stop it with: bash scripts/demo.sh --stop"
