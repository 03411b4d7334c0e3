#!/usr/bin/env bash
# Dense retrieval at scale: kvrag's "auto" index against exact search and the IVF-Flat
# reference, on synthetic 768-d embeddings (see bench/bench_retrieval_scale.cpp).
#
#   bench/run_retrieval_scale.sh [quick|1m|10m|all]      (default: quick and 1m)
#
# Environment: BUILD (build folder, default build), WORK (data and indexes, default
# /tmp/kvrag-retrieval-scale; 10m needs about 17 GB there), MAX_RAM_GIB (budget of "auto",
# default 2). Each scale prints a markdown table and keeps results.json in its folder; steps
# whose output exists are skipped, so an interrupted run resumes (delete a folder to redo it).
#
# Times measured on the 2-core development machine (shared with other work): quick ~1 min,
# 1m ~15 min, 10m ~35 min (generation 5 min, exact ground truth 12 min, build 12 min). The 10M
# run is long: run it in the background, e.g.
#   nohup bench/run_retrieval_scale.sh 10m > /tmp/retrieval-10m.log 2>&1 &
set -euo pipefail
cd "$(dirname "$0")/.."

what=${1:-default}
case $what in
  quick | 1m | 10m | all | default) ;;
  *)
    echo "usage: $0 [quick|1m|10m|all]" >&2
    exit 2 ;;
esac

BUILD=${BUILD:-build}
WORK=${WORK:-/tmp/kvrag-retrieval-scale}
MAX_RAM_GIB=${MAX_RAM_GIB:-2}
BIN="$BUILD/bin/bench_retrieval_scale"

cmake --build "$BUILD" --target bench_retrieval_scale -j"$(nproc)" >/dev/null
mkdir -p "$WORK"

run() {  # name n queries extra...
  local name=$1 n=$2 queries=$3
  shift 3
  echo "== $name: n=$n, log in $WORK/$name.log" >&2
  local start=$SECONDS
  "$BIN" --work "$WORK/$name" --n "$n" --queries "$queries" "$@" 2>"$WORK/$name.log"
  echo "== $name took $((SECONDS - start)) s" >&2
}

if [[ $what == quick || $what == default || $what == all ]]; then
  # 100k: "auto" is IVF-Flat under 2 GB; a 0.2 GiB budget shows the IVF-PQ path quickly.
  run n100k 100000 500 --max-ram-gib 0.2 --sweep 8:64,16:128,32:256
fi
if [[ $what == 1m || $what == default || $what == all ]]; then
  run n1m 1000000 1000 --max-ram-gib "$MAX_RAM_GIB" --sweep 16:128,32:128,32:256,128:256 --single-queries-ref 50
fi
if [[ $what == 10m || $what == all ]]; then
  # Flat and IVF100,Flat need 28.6 GiB of float32 in RAM: reported as infeasible, with the
  # chunked exact scan from disk (which computes the ground truth) in their place.
  run n10m 10000000 1000 --max-ram-gib "$MAX_RAM_GIB" --sweep 16:128,32:128,32:256,128:256
fi
