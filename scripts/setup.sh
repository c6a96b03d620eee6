#!/usr/bin/env bash
# Prepare a Debian 12 machine (as root) for Hyperlane: the container engines, their API
# sockets, busybox for the sample image, and the Python package in .venv.
# Running it again changes nothing that is already in place.
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
log_dir=/var/log/hyperlane
mkdir -p "$log_dir"

need_packages=()
# nginx and wrk are the peers that load tests and benchmarks run beside Hyperlane,
# debootstrap builds the Debian root file system of the image tests, and the
# exporter tests scrape `hyperlane monitor` with a real Prometheus. docker-compose
# (1.29 in Debian 12) starts the generated compose.yaml in the deploy file tests.
for pair in podman:podman runc:runc dockerd:docker.io busybox:busybox-static \
    curl:curl python3:python3 nginx:nginx-light wrk:wrk debootstrap:debootstrap \
    prometheus:prometheus docker-compose:docker-compose ; do
    command -v "${pair%%:*}" >/dev/null 2>&1 || need_packages+=("${pair#*:}")
done
if ! python3 -c 'import venv, ensurepip' >/dev/null 2>&1; then
    need_packages+=(python3-venv)
fi
if [ ! -x /bin/busybox ] || ! /bin/busybox --list 2>/dev/null | grep -qx httpd; then
    need_packages+=(busybox-static)
fi
if [ ${#need_packages[@]} -gt 0 ]; then
    echo "setup: installing ${need_packages[*]}" >&2
    apt-get update -q
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${need_packages[@]}"
fi

# crun fails on this kernel's hybrid cgroup layout, and Podman's default ulimits need
# CAP_SYS_RESOURCE, which this machine's root lacks.
conf=/etc/containers/containers.conf
if ! grep -q 'hyperlane' "$conf" 2>/dev/null; then
    mkdir -p /etc/containers
    [ -f "$conf" ] && cp "$conf" "$conf.before-hyperlane"
    cat > "$conf" <<'CONF'
# Written by hyperlane scripts/setup.sh
[containers]
default_ulimits = ["nofile=1024:1024", "nproc=1024:1024"]

[engine]
runtime = "runc"
CONF
fi

wait_for_socket() {
    local socket=$1 name=$2 pid=$3 log=$4
    for _ in $(seq 1 120); do
        if curl -sf --unix-socket "$socket" http://engine/_ping >/dev/null 2>&1; then
            return 0
        fi
        if ! kill -0 "$pid" 2>/dev/null; then
            echo "setup: $name exited; last lines of $log:" >&2
            tail -n 5 "$log" >&2
            return 1
        fi
        sleep 0.5
    done
    echo "setup: $name did not respond on $socket within 60 s; see $log" >&2
    return 1
}

if ! curl -sf --unix-socket /var/run/docker.sock http://engine/_ping >/dev/null 2>&1; then
    echo "setup: starting dockerd" >&2
    # A daemon that was killed leaves its pid files, and a new one refuses to start.
    # The pid counts as stale when its process is gone or a zombie that nothing
    # reaped.
    old_pid=$(cat /var/run/docker.pid 2>/dev/null || true)
    old_state=""
    if [ -n "$old_pid" ]; then
        old_state=$(awk '/^State:/ {print $2}' "/proc/$old_pid/status" 2>/dev/null \
            || true)
    fi
    if [ -z "$old_state" ] || [ "$old_state" = Z ]; then
        rm -f /var/run/docker.pid /var/run/docker/containerd/containerd.pid
    fi
    # Services start from / so that removing the checkout cannot pull their working
    # directory away while they run.
    (cd / && exec setsid nohup dockerd --host unix:///var/run/docker.sock \
        >"$log_dir/dockerd.log" 2>&1 < /dev/null) &
    wait_for_socket /var/run/docker.sock dockerd $! "$log_dir/dockerd.log"
fi

mkdir -p /run/podman
if ! curl -sf --unix-socket /run/podman/podman.sock http://engine/_ping >/dev/null 2>&1; then
    echo "setup: starting the Podman API service" >&2
    rm -f /run/podman/podman.sock
    (cd / && exec setsid nohup podman system service --time=0 \
        unix:///run/podman/podman.sock \
        >"$log_dir/podman-service.log" 2>&1 < /dev/null) &
    wait_for_socket /run/podman/podman.sock "podman system service" $! \
        "$log_dir/podman-service.log"
fi

cd "$repo"
if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv
fi
stamp=.venv/.hyperlane-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
    .venv/bin/python -m pip install -q --upgrade pip
    .venv/bin/python -m pip install -q -e '.[test]'
    touch "$stamp"
fi
