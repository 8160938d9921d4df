#!/usr/bin/env bash
# Base images for the Docker end-to-end suite (make test-docker).
#
# docker-compose.yml and deploy/Dockerfile name the official images
# (python, nginx, redis by tag). For each one this script prints the image to
# use, as PYTHON_IMAGE=..., NGINX_IMAGE=..., REDIS_IMAGE=... lines on stdout:
#   - the official image, if it is already present or can be pulled;
#   - otherwise a local stand-in built offline from Debian packages:
#       windsock-standin/debian:bookworm   debootstrap --variant=minbase, docker import
#       windsock-standin/python:3.11       python3, venv, pip, useradd
#       windsock-standin/nginx:1.22        the official image's entrypoint contract
#       windsock-standin/redis:7           redis-server, redis-cli, /data
#     (recipes in tests/docker/standin/). A stand-in whose tag exists and was
#     built from the same recipe is reused, so a second run builds nothing.
# Progress goes to stderr.
#
#   eval "$(tests/docker/build-base-images.sh)"      then docker compose up --build
#
# Environment:
#   WINDSOCK_STANDIN=always     use the stand-ins even where official images exist
#   WINDSOCK_DEBIAN_MIRROR=URL  mirror for debootstrap (default: the one apt uses)
#   WINDSOCK_BUILD_NETWORK=MODE network for RUN steps of the stand-in builds
#                               (default: Docker's default bridge)
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
recipes="$here/standin"
suite=bookworm
base_tag=windsock-standin/debian:$suite
label=org.windsock.standin.recipe

log() { echo "build-base-images: $*" >&2; }
now() { date +%s; }

command -v docker >/dev/null || { log "docker is not installed"; exit 2; }
docker info >/dev/null 2>&1 || { log "no Docker engine answers (docker info failed)"; exit 2; }

# The production defaults, read from docker-compose.yml so they never drift.
default_of() {
    sed -n "s/.*\${$1:-\([^}]*\)}.*/\1/p" "$root/docker-compose.yml" | head -n 1
}

# One hash over every stand-in recipe and this script: a change rebuilds them.
recipe=$( (cat "$0"; find "$recipes" -type f | LC_ALL=C sort | xargs cat) | sha256sum | cut -c1-16)

# The Debian mirror apt uses here (one-line or deb822 sources), else deb.debian.org.
debian_mirror() {
    if [ -n "${WINDSOCK_DEBIAN_MIRROR:-}" ]; then
        echo "$WINDSOCK_DEBIAN_MIRROR"
        return
    fi
    local found
    found=$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null \
        | sed -e 's/#.*//' -e 's/\[[^]]*\]//' \
        | awk -v s="$suite" '$1 == "deb" && $3 == s { print $2; exit }')
    if [ -z "$found" ]; then
        found=$(cat /etc/apt/sources.list.d/*.sources 2>/dev/null | awk -v s="$suite" '
            BEGIN { RS = ""; FS = "\n" }
            {
                uri = ""; ok = 0; deb = 0
                for (i = 1; i <= NF; i++) {
                    if ($i ~ /^URIs:/) { split($i, u, /[ \t]+/); uri = u[2] }
                    if ($i ~ /^Types:/ && $i ~ /[ \t]deb([ \t]|$)/) deb = 1
                    if ($i ~ /^Suites:/) { n = split($i, w, /[ \t]+/); for (j = 2; j <= n; j++) if (w[j] == s) ok = 1 }
                }
                if (uri != "" && ok && deb) { print uri; exit }
            }')
    fi
    echo "${found:-http://deb.debian.org/debian}"
}

have_image() { docker image inspect "$1" >/dev/null 2>&1; }

standin_current() {
    have_image "$1" && [ "$(docker image inspect -f "{{ index .Config.Labels \"$label\" }}" "$1")" = "$recipe" ]
}

build_base() {
    if have_image "$base_tag"; then
        return
    fi
    if ! command -v debootstrap >/dev/null; then
        [ "$(id -u)" = 0 ] || { log "debootstrap is missing and this is not root: apt-get install debootstrap"; exit 2; }
        log "installing debootstrap"
        apt-get update -qq >&2
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends debootstrap >&2
    fi
    [ "$(id -u)" = 0 ] || { log "debootstrap needs root"; exit 2; }
    local mirror work started
    mirror=$(debian_mirror)
    work=$(mktemp -d /var/tmp/windsock-rootfs.XXXXXX)
    # shellcheck disable=SC2064  # expand now: the trap removes this directory
    trap "rm -rf '$work'" EXIT
    started=$(now)
    log "debootstrap --variant=minbase $suite from $mirror"
    debootstrap --variant=minbase "$suite" "$work/rootfs" "$mirror" >"$work/debootstrap.log" 2>&1 || {
        tail -n 20 "$work/debootstrap.log" >&2
        log "debootstrap failed"
        exit 1
    }
    # Container conventions: services never start during apt installs, no
    # recommends, no caches.
    printf '#!/bin/sh\nexit 101\n' >"$work/rootfs/usr/sbin/policy-rc.d"
    chmod +x "$work/rootfs/usr/sbin/policy-rc.d"
    printf 'APT::Install-Recommends "false";\nAPT::Install-Suggests "false";\n' \
        >"$work/rootfs/etc/apt/apt.conf.d/90windsock-standin"
    rm -rf "$work/rootfs/var/cache/apt/archives/"*.deb "$work/rootfs/var/lib/apt/lists/"*
    tar -C "$work/rootfs" --numeric-owner -c . \
        | docker import --change 'CMD ["bash"]' --change 'ENV DEBIAN_FRONTEND=noninteractive' - "$base_tag" >/dev/null
    rm -rf "$work"
    trap - EXIT
    log "built $base_tag in $(($(now) - started)) s"
}

build_standin() {
    local kind=$1 tag=$2 context started
    if standin_current "$tag"; then
        log "reusing $tag"
        return
    fi
    build_base
    context=$(mktemp -d /var/tmp/windsock-standin.XXXXXX)
    # shellcheck disable=SC2064
    trap "rm -rf '$context'" EXIT
    cp -R "$recipes/$kind/." "$context/"
    if [ "$kind" = python ]; then
        mkdir -p "$context/local-ca"
        cp /usr/local/share/ca-certificates/*.crt "$context/local-ca/" 2>/dev/null || true
    fi
    started=$(now)
    log "building $tag"
    local network=()
    [ -z "${WINDSOCK_BUILD_NETWORK:-}" ] || network=(--network "$WINDSOCK_BUILD_NETWORK")
    DOCKER_BUILDKIT=0 docker build --force-rm --quiet "${network[@]}" \
        --build-arg "BASE=$base_tag" --label "$label=$recipe" -t "$tag" "$context" >/dev/null 2>"$context/err" || {
        cat "$context/err" >&2
        log "building $tag failed"
        exit 1
    }
    rm -rf "$context"
    trap - EXIT
    log "built $tag in $(($(now) - started)) s"
}

# Print NAME=IMAGE for one base image: official if present or pullable, else the stand-in.
choose() {
    local var=$1 kind=$2 standin=$3 wanted
    wanted=${!var:-$(default_of "$var")}
    if [ "${WINDSOCK_STANDIN:-}" != always ]; then
        if have_image "$wanted"; then
            log "$var: $wanted (present)"
            echo "$var=$wanted"
            return
        fi
        if timeout 300 docker pull -q "$wanted" >/dev/null 2>&1; then
            log "$var: $wanted (pulled)"
            echo "$var=$wanted"
            return
        fi
        log "$var: $wanted is neither present nor pullable; using the stand-in $standin"
    fi
    build_standin "$kind" "$standin"
    echo "$var=$standin"
}

started=$(now)
choose PYTHON_IMAGE python windsock-standin/python:3.11
choose NGINX_IMAGE nginx windsock-standin/nginx:1.22
choose REDIS_IMAGE redis windsock-standin/redis:7
log "base images ready in $(($(now) - started)) s"
