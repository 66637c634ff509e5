#!/usr/bin/env bash
# Installs every Debian package that Tessera's build, tests and benchmarks need.
# Idempotent: packages already present are left as they are. Needs root (or sudo).
set -euo pipefail

PKGS=(
    build-essential cmake pkg-config git ca-certificates
    check
    libjansson-dev
    libgrpc-dev protobuf-c-compiler libprotobuf-c-dev protobuf-compiler
    librocksdb-dev librdkafka-dev libev-dev libcurl4-openssl-dev
    libsqlite3-dev libmicrohttpd-dev libjemalloc-dev
    etcd-server
    valgrind time bc
    python3 python3-grpcio python3-protobuf
)

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

missing=()
for p in "${PKGS[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
        missing+=("$p")
    fi
done

# Node.js is only for the DuckDB peer in benchmarks/; any node already on the machine will do.
if ! command -v node >/dev/null 2>&1; then
    missing+=(nodejs npm)
fi

if [ "${#missing[@]}" -eq 0 ]; then
    echo "install-deps: all ${#PKGS[@]} packages already installed"
    exit 0
fi

echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -q
$SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
