#!/usr/bin/env bash
# The quickstart: builds Tessera and runs its main job on the embedded default.
# Today (until the offline engine lands) that is: validate every example config and print the
# output columns of each example Join and GroupBy.
set -euo pipefail
cd "$(dirname "$0")/.."

jobs=$(nproc 2>/dev/null || echo 2)
echo "== building (build/) =="
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j "$jobs" --target tessera >/dev/null
TESSERA=build/cli/tessera

echo
echo "== tessera validate examples/ =="
"$TESSERA" validate --warehouse examples/warehouse examples/

for conf in $(find examples/group_bys examples/joins -type f ! -name 'README*' | sort); do
    echo
    echo "== tessera columns $conf =="
    "$TESSERA" columns --warehouse examples/warehouse "$conf"
done
echo
echo "quickstart: done. Configs live in examples/, the CLI in $TESSERA (try: $TESSERA --help)."
