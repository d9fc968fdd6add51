#!/usr/bin/env bash
# Install what dockyard's tests and demo need on Debian 12 and create .venv.
#
# Safe to rerun: apt-get runs only when a package is missing, and pip only when
# pyproject.toml changed since the last install. Options:
#   --bench   also install the peers and load tools the benchmarks use (docker.io, wrk)
# Environment: PYTHON names the interpreter for a new .venv (default python3).
set -euo pipefail
cd "$(dirname "$0")/.."

apt_packages=(
    docker-registry   # a real registry on loopback for the tests and the demo
    skopeo            # pushes the test images, and is the benchmark's floor
    umoci             # an independent unpacker that checks the test images
    busybox-static    # the binary inside the busybox test image
    debootstrap       # builds the benchmark's Debian image
    libseccomp2       # the runtime's seccomp filters
    iproute2
    nftables
    iptables
    python3-venv
    tini              # --init runs tini-static as PID 1 inside containers
    runc              # an external OCI runtime for --runtime runc
    crun              # an external OCI runtime for --runtime crun
    chromium          # the end-to-end test plays the demo game in headless Chromium
    docker-compose    # the API tests bring a two-service app up and down
)
for argument in "$@"; do
    case "$argument" in
        --bench) apt_packages+=(docker.io wrk) ;;
        *) echo "setup.sh: unknown option $argument (known: --bench)" >&2; exit 2 ;;
    esac
done

sudo=()
if [[ $EUID -ne 0 ]]; then
    sudo=(sudo)
fi

missing=()
for package in "${apt_packages[@]}"; do
    if ! dpkg-query -W -f='${Status}\n' "$package" 2>/dev/null | grep -qx 'install ok installed'; then
        missing+=("$package")
    fi
done
if ((${#missing[@]})); then
    echo "setup.sh: installing ${missing[*]}"
    "${sudo[@]}" apt-get update -q
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}" </dev/null
fi

if [[ ! -x .venv/bin/python ]]; then
    echo "setup.sh: creating .venv"
    "${PYTHON:-python3}" -m venv .venv
fi

# The stamp contains the hash of the pyproject.toml that was last installed.
stamp=.venv/.dockyard-installed
wanted=$(sha256sum pyproject.toml | cut -d' ' -f1)
if [[ ! -f $stamp || $(cat "$stamp") != "$wanted" ]]; then
    echo "setup.sh: installing dockyard and its test dependencies into .venv"
    .venv/bin/python -m pip install -q --disable-pip-version-check -e '.[test]'
    echo "$wanted" >"$stamp"
fi

# Every dockyard command pays Python's start-up. Where PYTHONDONTWRITEBYTECODE is
# set, Python never caches compiled modules by itself, so compile them here once;
# it still reads the cached files. This is quick when nothing changed.
.venv/bin/python -m compileall -q src >/dev/null
