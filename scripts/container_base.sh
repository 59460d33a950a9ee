#!/usr/bin/env bash
# Make the Dockerfile's base image available to podman/buildah: the real python:3.11-slim-bookworm
# when it is already stored or a registry answers; otherwise (no registry reachable, as on the
# development machine and in CI) a STAND-IN of the same name built from Debian bookworm packages:
# debootstrap minbase + python3 (3.11 on bookworm), python3-venv, libgomp1, ca-certificates, and
# `python` on the PATH. The stand-in carries the label ecgbeats.base=stand-in so it is never taken
# for the real one (scripts/image_test.py reports which base the image was built on).
# Needs root for debootstrap. Usage: scripts/container_base.sh [python:3.11-slim-bookworm]
set -euo pipefail
BASE="${1:-python:3.11-slim-bookworm}"
FULL="docker.io/library/${BASE}"
MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"

if podman image exists "$FULL"; then
    kind=$(podman image inspect --format '{{index .Config.Labels "ecgbeats.base"}}' "$FULL")
    echo "base image: $FULL already stored (${kind:-pulled from a registry})"
    exit 0
fi
if podman pull --quiet "$FULL" >/dev/null 2>/tmp/ecgbeats-base-pull.err; then
    echo "base image: $FULL pulled from a registry"
    exit 0
fi
echo "base image: $FULL cannot be pulled ($(tail -n1 /tmp/ecgbeats-base-pull.err)); building a STAND-IN from Debian bookworm packages" >&2
if [ "$BASE" != "python:3.11-slim-bookworm" ]; then
    echo "base image: no stand-in recipe for $BASE (only python:3.11-slim-bookworm)" >&2
    exit 1
fi
command -v debootstrap >/dev/null || { echo "base image: debootstrap is not installed (apt-get install debootstrap)" >&2; exit 1; }

root=$(mktemp -d /var/tmp/ecgbeats-base.XXXXXX)
trap 'rm -rf "$root"' EXIT
debootstrap --variant=minbase --include=python3,python3-venv,libgomp1,ca-certificates \
    bookworm "$root" "$MIRROR" >"$root.log" 2>&1 || { tail -n 20 "$root.log" >&2; exit 1; }
rm -f "$root.log"
ln -s /usr/bin/python3 "$root/usr/local/bin/python"  # the official image has `python` on the PATH
rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin "$root"/var/cache/apt/archives/*.deb \
    "$root"/usr/share/doc/* "$root"/usr/share/man/* "$root"/usr/share/info/*
tar -C "$root" -c . | podman import --quiet \
    --change 'ENV PATH=/usr/local/bin:/usr/local/sbin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV LANG=C.UTF-8' \
    --change 'LABEL ecgbeats.base=stand-in' \
    --change 'LABEL ecgbeats.base.recipe="debootstrap --variant=minbase bookworm + python3 python3-venv libgomp1 ca-certificates"' \
    --change 'CMD ["python3"]' \
    - "$FULL" >/dev/null
echo "base image: $FULL is a STAND-IN built with debootstrap from $MIRROR (Debian bookworm, $(podman run --rm --network=host --ulimit host --runtime runc "$FULL" python --version 2>&1))"
