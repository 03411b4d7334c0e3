#!/usr/bin/env bash
# Builds the libFuzzer harnesses (fuzz/) with Debian's clang and runs each for SECONDS.
#
#   bench/fuzz.sh SECONDS [HARNESS...]     (default: every harness in fuzz/harnesses.cmake)
#
# Environment: BUILD (default build-fuzz), JOBS (harnesses run at once, default 2), MAX_LEN
# (longest input tried, default 4096). Needs clang, libclang-rt-14-dev (scripts/setup.sh --fuzz
# installs them) and, for the tokenizer harnesses, ../shared (or $KVRAG_SHARED).
#
# Each harness starts from its kept inputs (fuzz/corpus/NAME) and grows a working corpus in
# BUILD/corpus/NAME, which later runs continue from. A finding (crash, sanitizer report, leak,
# timeout, broken invariant) is written to BUILD/findings/ and the script exits 1; copy the input
# into fuzz/corpus/NAME/regression-WHAT once it is fixed, and the test suite replays it for good.
# The table at the end gives each harness's executions, speed and coverage (libFuzzer's "cov":
# instrumented edges reached; "ft": features) for the README.
set -euo pipefail
cd "$(dirname "$0")/.."

SECONDS_EACH=${1:?usage: bench/fuzz.sh SECONDS [HARNESS...]}
shift
BUILD=${BUILD:-build-fuzz}
JOBS=${JOBS:-2}
MAX_LEN=${MAX_LEN:-4096}

if [ $# -gt 0 ]; then
  HARNESSES=("$@")
else
  mapfile -t HARNESSES < <(sed -n '/KVRAG_FUZZ_HARNESSES/,/)/p' fuzz/harnesses.cmake |
                           grep -E '^\s+[a-z_]+\s*$' | tr -d ' ')
fi

mkdir -p "$BUILD/findings" "$BUILD/logs"
cmake -S fuzz -B "$BUILD" -DCMAKE_CXX_COMPILER=clang++ > "$BUILD/logs/configure.log" 2>&1 ||
  { cat "$BUILD/logs/configure.log"; exit 1; }
cmake --build "$BUILD" -j "$JOBS" > "$BUILD/logs/build.log" 2>&1 ||
  { tail -30 "$BUILD/logs/build.log"; exit 1; }
cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')
echo "fuzz: ${#HARNESSES[@]} harnesses × ${SECONDS_EACH} s, $JOBS at a time, max_len $MAX_LEN; $cpu"

run_one() {
  local name=$1
  mkdir -p "$BUILD/corpus/$name"
  local dict=()
  [ -f "fuzz/$name.dict" ] && dict=(-dict="fuzz/$name.dict")
  # -rss_limit_mb: a parser that balloons on a small input is a finding too.
  "$BUILD/bin/fuzz_$name" "$BUILD/corpus/$name" "fuzz/corpus/$name" "${dict[@]}" \
    -max_total_time="$SECONDS_EACH" -max_len="$MAX_LEN" -timeout=25 -rss_limit_mb=2048 \
    -print_final_stats=1 -artifact_prefix="$BUILD/findings/$name-" \
    > "$BUILD/logs/$name.log" 2>&1
}

pids=() names=() failed=()
for name in "${HARNESSES[@]}"; do
  run_one "$name" & pids+=($!) names+=("$name")
  if [ ${#pids[@]} -ge "$JOBS" ]; then
    wait "${pids[0]}" || failed+=("${names[0]}")
    pids=("${pids[@]:1}") names=("${names[@]:1}")
  fi
done
for i in "${!pids[@]}"; do wait "${pids[$i]}" || failed+=("${names[$i]}"); done

printf '\n| harness | executions | exec/s | cov (edges) | ft | corpus | result |\n'
printf '|---|---:|---:|---:|---:|---:|---|\n'
for name in "${HARNESSES[@]}"; do
  log=$BUILD/logs/$name.log
  execs=$(grep -oE 'stat::number_of_executed_units: +[0-9]+' "$log" | grep -oE '[0-9]+$' || echo '?')
  speed=$(grep -oE 'stat::average_exec_per_sec: +[0-9]+' "$log" | grep -oE '[0-9]+$' || echo '?')
  last=$(grep -E '^#[0-9]+.*cov: ' "$log" | tail -1)
  cov=$(grep -o 'cov: [0-9]*' <<< "$last" | grep -o '[0-9]*' || echo '?')
  ft=$(grep -o 'ft: [0-9]*' <<< "$last" | grep -o '[0-9]*' || echo '?')
  corp=$(grep -o 'corp: [0-9]*' <<< "$last" | grep -o '[0-9]*' || echo '?')
  result=clean
  [[ " ${failed[*]} " == *" $name "* ]] && result="FINDING (see $log)"
  printf '| %s | %s | %s | %s | %s | %s | %s |\n' "$name" "$execs" "$speed" "$cov" "$ft" "$corp" "$result"
done
[ ${#failed[@]} -eq 0 ] || { echo "fuzz: findings in: ${failed[*]} (inputs in $BUILD/findings/)"; exit 1; }
