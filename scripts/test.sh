#!/usr/bin/env bash
# Builds kvrag and runs the whole test suite: the README's test command, and what CI runs.
# On a fresh Debian 12 machine this is the only step needed (it installs the packages first).
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup.sh
jobs=$(nproc)
cmake --build build -j"$jobs"
# Tests read ../shared (or $KVRAG_SHARED) and skip, saying so, where it is absent.
cd build
ctest --output-on-failure -j"$jobs" --timeout 900 "$@"
