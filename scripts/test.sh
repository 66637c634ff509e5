#!/usr/bin/env bash
# Builds Tessera twice and runs its tests: a normal build (every ctest label: unit, compat,
# integration) and an ASan+UBSan build (unit tests). Build trees: build/ and build-asan/.
# Usage: scripts/test.sh [--no-asan]
set -euo pipefail
cd "$(dirname "$0")/.."

jobs=$(nproc 2>/dev/null || echo 2)
asan=1
[ "${1:-}" = "--no-asan" ] && asan=0

echo "== normal build (build/) =="
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo -DTESSERA_WERROR=ON >/dev/null
cmake --build build -j "$jobs"
(cd build && ctest --output-on-failure -j "$jobs")

if [ "$asan" = 1 ]; then
    echo "== ASan+UBSan build (build-asan/), unit tests =="
    cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DTESSERA_WERROR=ON \
        -DTESSERA_SANITIZE=address,undefined -DTESSERA_BUILD_BENCHMARKS=OFF >/dev/null
    cmake --build build-asan -j "$jobs"
    (cd build-asan && ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 \
        ctest --output-on-failure -j "$jobs" -L unit)
fi
