#!/usr/bin/env bash
# Installs every Debian package cairn needs to build, test and benchmark.
# Idempotent: when everything is present it only checks and returns.
set -euo pipefail

# Build dependencies (libraries and tools the CMake build needs).
BUILD_PKGS=(
  build-essential cmake pkg-config git
  libgrpc-dev protobuf-c-compiler libprotobuf-c-dev
  libssl-dev liblmdb-dev libarchive-dev libjansson-dev
  libcmocka-dev openssl zlib1g-dev libzstd-dev
  libseccomp-dev libcurl4-openssl-dev
)
# Test and benchmark peers: tools we did not write that check our output.
TEST_PKGS=(
  clang libclang-rt-14-dev
  skopeo umoci busybox-static
  bazel-bootstrap docker-registry
  uidmap iproute2 hyperfine jq docker.io buildah
  passt nginx python3
  apache2-utils python3-jwt
  curl time
)

missing=()
for p in "${BUILD_PKGS[@]}" "${TEST_PKGS[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed'; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
  echo "deps.sh: missing packages: ${missing[*]}" >&2
  echo "deps.sh: run as root (or: sudo apt-get install ${missing[*]})" >&2
  exit 1
fi

echo "deps.sh: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
# Servers among the packages (nginx, dockerd) are started by the tests on
# 127.0.0.1 when they need them, never by the package's install scripts:
# a policy-rc.d that refuses every start is in place for the install.
policy=/usr/sbin/policy-rc.d
if [ ! -e "$policy" ]; then
  printf '#!/bin/sh\nexit 101\n' >"$policy"
  chmod 755 "$policy"
  trap 'rm -f "$policy"' EXIT
fi
# The package lists may be absent on a fresh machine; refresh them once.
if ! apt-get install -y --no-install-recommends "${missing[@]}"; then
  apt-get update
  apt-get install -y --no-install-recommends "${missing[@]}"
fi
