#!/usr/bin/env bash
# Make a minimal Debian image with python3 and import it into the container engine: the base for
# the images where no registry is reachable (deploy/ci-compose.sh uses it as PYTHON_IMAGE, as a
# CPU worker's CUDA_IMAGE, and under the PostgreSQL and Redis stand-ins).
#
#   deploy/debian-base.sh IMAGE            e.g. regsearch-ci/debian-python:bookworm
#
# Needs root and debootstrap. The root filesystem is kept as a tar in REGSEARCH_CI_CACHE
# (default /var/cache/regsearch-ci, outside the checkout), so a later run only imports it; the
# import is skipped when the engine already has IMAGE.
#   DEBIAN_SUITE   (bookworm: python 3.11, the CPython of the CPU wheel deploy/ci-compose.sh serves)
#   DEBIAN_MIRROR  (http://deb.debian.org/debian)
set -euo pipefail

image=${1:?usage: deploy/debian-base.sh IMAGE}
docker=${DOCKER:-docker}
suite=${DEBIAN_SUITE:-bookworm}
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
packages=python3,python3-venv,ca-certificates
cache=${REGSEARCH_CI_CACHE:-/var/cache/regsearch-ci}
rootfs_tar="$cache/debian-$suite-$(printf '%s' "$packages $mirror" | sha256sum | cut -c1-12).tar"

if "$docker" image inspect "$image" >/dev/null 2>&1; then
  echo "debian-base: $image is there"
  exit 0
fi

if [ ! -s "$rootfs_tar" ]; then
  command -v debootstrap >/dev/null || { echo "debian-base: debootstrap is not installed (apt-get install debootstrap)" >&2; exit 1; }
  mkdir -p "$cache"
  rootfs=$(mktemp -d "$cache/rootfs.XXXXXX")
  trap 'rm -rf "$rootfs"' EXIT
  echo "debian-base: debootstrap $suite ($packages) into $rootfs"
  debootstrap --variant=minbase --include="$packages" "$suite" "$rootfs" "$mirror" >"$rootfs.log" 2>&1 \
    || { tail -20 "$rootfs.log" >&2; exit 1; }
  rm -f "$rootfs.log"
  # What an image needs no copy of: package caches, lists (apt-get update fetches them), docs.
  rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/* \
         "$rootfs"/usr/share/doc/* "$rootfs"/usr/share/man/* "$rootfs"/usr/share/locale/*
  # The image gets its own mirror list; the build host's is never copied in.
  echo "deb $mirror $suite main" >"$rootfs/etc/apt/sources.list"
  tar -C "$rootfs" --numeric-owner -cf "$rootfs_tar.tmp" .
  mv "$rootfs_tar.tmp" "$rootfs_tar"
fi

echo "debian-base: importing $rootfs_tar as $image"
"$docker" import \
  --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --change 'ENV LANG=C.UTF-8' \
  --change 'CMD ["/bin/bash"]' \
  "$rootfs_tar" "$image" >/dev/null
