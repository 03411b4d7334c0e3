#!/usr/bin/env bash
# Builds kvrag and its tests with gcc's AddressSanitizer and UndefinedBehaviorSanitizer in
# build-asan/ and runs the whole test suite there (README, "Fuzzing and sanitizers"). CI keeps the
# plain build; run this after changing a parser, the server or memory handling.
#
#   scripts/sanitize_tests.sh [CTEST_ARGS...]        e.g. -R 'serve|fuzz'
#
# Environment: BUILD (default build-asan), JOBS (default 2). Any sanitizer report fails the test it
# happens in (UBSan does not recover; ASan aborts). Leaks are reported except those of the
# third-party libraries named in scripts/lsan.supp (allocations they keep for the process's life).
# Tests that load SentencePiece in a process holding libtorch fail here by construction (ASan
# refuses RTLD_DEEPBIND, and the two protobufs then clash: README, "Fuzzing and sanitizers").
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build-asan}
JOBS=${JOBS:-2}
FLAGS="-fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer"

cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DKVRAG_BUILD_BENCH=OFF \
  -DCMAKE_CXX_FLAGS="$FLAGS" -DCMAKE_C_FLAGS="$FLAGS" \
  -DCMAKE_EXE_LINKER_FLAGS="-fsanitize=address,undefined" \
  -DCMAKE_SHARED_LINKER_FLAGS="-fsanitize=address,undefined" \
  -DCMAKE_MODULE_LINKER_FLAGS="-fsanitize=address,undefined" > /dev/null
cmake --build "$BUILD" -j "$JOBS"

export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1:strict_string_checks=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
export LSAN_OPTIONS=${LSAN_OPTIONS:-suppressions=$PWD/scripts/lsan.supp:print_suppressions=0}
cd "$BUILD"
ctest -j "$JOBS" --output-on-failure --timeout 1500 "$@"
