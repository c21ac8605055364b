#!/usr/bin/env bash
# Installs every Debian package cairn needs to build, test and benchmark.
# Idempotent: when everything is present it only checks and returns.
set -euo pipefail

# Build dependencies (libraries and tools the CMake build needs).
BUILD_PKGS=(
  build-essential cmake pkg-config git
  libgrpc-dev protobuf-c-compiler libprotobuf-c-dev
  libssl-dev liblmdb-dev libarchive-dev libjansson-dev
  libcmocka-dev openssl zlib1g-dev libzstd-dev libdeflate-dev
  libseccomp-dev libcurl4-openssl-dev libmicrohttpd-dev
)
# Test and benchmark peers: tools we did not write that check our output.
TEST_PKGS=(
  clang libclang-rt-14-dev
  skopeo umoci busybox-static
  bazel-bootstrap docker-registry
  uidmap iproute2 hyperfine jq docker.io buildah
  passt nginx python3
  # cairnd's /metrics checked by a real Prometheus and promtool.
  prometheus
  apache2-utils python3-jwt python3-cryptography
  # The S3 backend's tests: a real OpenStack Swift with s3api on 127.0.0.1
  # (tests/integration/s3_lib.sh; its cache runs in-process, no memcached).
  python3-swift
  # ... and cairnd under a clock an hour off (RequestTimeTooSkewed).
  faketime
  # The Helm chart's tests (tests/helm): Helm's template engine offline.
  golang-go golang-github-masterminds-sprig-dev golang-k8s-sigs-yaml-dev
  golang-github-xeipuuv-gojsonschema-dev nodejs
  curl time
  # bench/rebuild draws its chart with gnuplot.
  gnuplot-nox
)

# Kubernetes' schemas for the chart's rendered objects (npm, pinned by
# tests/helm/package-lock.json), installed here so the tests run offline.
CAIRN_TEST_NODE_DIR=/opt/cairn-test
npm_deps() {
  local src
  src="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/tests/helm"
  if cmp -s "$src/package-lock.json" "$CAIRN_TEST_NODE_DIR/package-lock.json" &&
     [ -d "$CAIRN_TEST_NODE_DIR/node_modules/kubernetes-models" ]; then
    return 0
  fi
  if [ "$(id -u)" -ne 0 ]; then
    echo "deps.sh: run as root to install the npm packages into $CAIRN_TEST_NODE_DIR" >&2
    return 1
  fi
  echo "deps.sh: npm ci into $CAIRN_TEST_NODE_DIR"
  mkdir -p "$CAIRN_TEST_NODE_DIR"
  cp "$src/package.json" "$src/package-lock.json" "$CAIRN_TEST_NODE_DIR/"
  npm ci --prefix "$CAIRN_TEST_NODE_DIR" --no-audit --no-fund --loglevel=error
}

missing=()
for p in "${BUILD_PKGS[@]}" "${TEST_PKGS[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed'; then
    missing+=("$p")
  fi
done

# Debian's nodejs has npm apart; NodeSource's nodejs brings its own.
command -v npm >/dev/null || missing+=(npm)

if [ ${#missing[@]} -eq 0 ]; then
  npm_deps
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
npm_deps
