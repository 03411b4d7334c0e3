#!/usr/bin/env bash
# Data-parallel training on one machine (README "Data-parallel training"): examples/s of
# `mpirun -np 2 kvrag --threads 1 train-…` against one process with `--threads 2`, run one after
# the other, alternating, ROUNDS rounds; the rate is each run's train_report.json
# "examples_per_s" (the training loop, without loading). Two jobs:
#   retriever  train-retriever from a fresh BERT 4×256 (3.2M parameters) on the first QUESTIONS
#              of the demo's train questions, batch 32, one epoch;
#   prefix     train-prefix with that BERT as the knowledge encoder's start, the demo's LLM,
#              the same questions with their gold passages, batch 16, one epoch.
#
#   [ROUNDS=2] [QUESTIONS=576] bench/data_parallel_throughput.sh WORKSPACE
#
# WORKSPACE: a finished `kvrag demo` workspace (the default demo's has 2,040 train questions).
# Runs go to WORKSPACE/dp-bench (deleted first). Prints the CPU, the load average
# before each run and a markdown table. Needs BUILD/bin/kvrag (BUILD=build) and Open MPI's mpirun.
set -euo pipefail

if [[ $# -lt 1 ]]; then
  sed -n '2,/^set -e/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//'
  exit 2
fi
W=$(cd "$1" && pwd)
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
KVRAG=${BUILD:-$HERE/../build}/bin/kvrag
[[ -x $KVRAG ]] || { echo "data_parallel_throughput.sh: $KVRAG not found; build it first" >&2; exit 1; }
command -v mpirun >/dev/null || { echo "data_parallel_throughput.sh: mpirun not found (openmpi-bin)" >&2; exit 1; }
for f in llm retriever-vocab.txt questions-train.jsonl corpus.jsonl; do
  [[ -e $W/$f ]] || { echo "data_parallel_throughput.sh: $W/$f not found: not a demo workspace" >&2; exit 1; }
done
# Open MPI as root and in containers, as the tests run it.
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export OMPI_MCA_btl_vader_single_copy_mechanism=none

B=$W/dp-bench
rm -rf "$B" && mkdir -p "$B"
vocab=$(wc -l <"$W/retriever-vocab.txt")
head -n "${QUESTIONS:-576}" "$W/questions-train.jsonl" >"$B/train.jsonl"
cat >"$B/bert-4x256.json" <<EOF
{"architectures": ["BertModel"], "model_type": "bert", "hidden_act": "gelu", "hidden_size": 256,
 "intermediate_size": 1024, "num_attention_heads": 4, "num_hidden_layers": 4,
 "max_position_embeddings": 256, "type_vocab_size": 2, "vocab_size": $vocab,
 "layer_norm_eps": 1e-12, "pad_token_id": 0, "position_embedding_type": "absolute"}
EOF

retriever() {  # OUT [mpirun prefix...]
  local out=$1
  shift
  "$@" "$KVRAG" --threads "$THREADS" train-retriever --out "$out" --init-config "$B/bert-4x256.json" \
    --vocab "$W/retriever-vocab.txt" --questions "$B/train.jsonl" --passages "$W/corpus.jsonl" \
    --max-length 256 --batch-size 32 --epochs 1 --lr 5e-4 --warmup 5 --seed 1 --json >/dev/null
}
prefix() {  # OUT [mpirun prefix...]
  local out=$1
  shift
  "$@" "$KVRAG" --threads "$THREADS" train-prefix --out "$out" --llm "$W/llm" --init "$B/start" \
    --train "$B/train.jsonl" --oracle --passages "$W/corpus.jsonl" \
    --batch-size 16 --epochs 1 --lr 1e-3 --warmup 5 --seed 1 --json >/dev/null
}
# The knowledge encoder's start: the retriever job's fresh BERT (same for every run).
THREADS=2 retriever "$B/start"

rate() { python3 -c "import json,sys; print(round(json.load(open(sys.argv[1]))['examples_per_s'], 1))" "$1/train_report.json"; }
declare -A one two
for round in $(seq 1 "${ROUNDS:-2}"); do
  for job in retriever prefix; do
    echo "[$(date +%T)] round $round, $job, 1 process × 2 threads (load $(cut -d' ' -f1-3 /proc/loadavg))" >&2
    THREADS=2 $job "$B/$job-one-$round"
    echo "[$(date +%T)] round $round, $job, mpirun -np 2 × 1 thread (load $(cut -d' ' -f1-3 /proc/loadavg))" >&2
    THREADS=1 $job "$B/$job-two-$round" mpirun --bind-to none -np 2
    one[$job]+="$(rate "$B/$job-one-$round"), "
    two[$job]+="$(rate "$B/$job-two-$round"), "
  done
done
echo "CPU: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(nproc) cores; flags:$(grep -m1 -o 'avx2\|avx512f\|avx512_bf16\|amx_bf16' /proc/cpuinfo | sort -u | tr '\n' ' ')"
echo
echo "| examples/s | 1 process, --threads 2 | mpirun -np 2, --threads 1 each |"
echo "|---|---|---|"
for job in retriever prefix; do
  echo "| $job | ${one[$job]%, } | ${two[$job]%, } |"
done
