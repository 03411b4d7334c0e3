#!/usr/bin/env bash
# Trains the demo's knowledge encoder through its frozen LLM held in each dtype (fp32, bf16,
# int8) and evaluates each encoder on the held-out test questions in prefix mode with the LLM in
# the same dtype: does a prefix learned through a bf16 or int8 LLM work as well as one learned
# through fp32? Prints one row per dtype (test EM, dev EM, examples/s, peak RSS).
#
#   [EPOCHS=3] [SEED=1] bench/prefix_dtypes.sh WORKSPACE [DTYPE...]   # default: fp32 bf16 int8
#
# WORKSPACE: a finished `kvrag demo` workspace (its llm/, retriever/, index/, questions and
# knowledge passages). Each run goes to WORKSPACE/ke-DTYPE[-sSEED] (resumed if interrupted, reused if
# finished); the demo's own knowledge_encoder/ is left alone. The settings are the demo's
# (src/demo/demo_pipeline.cpp, stage "knowledge"): readout tokens with the LLM's embeddings and
# pieces, keys placed at the answer, 3 epochs of batch 16, lr 3e-3, seed 1 (SEED: another
# initialisation and data order, to see the spread between runs); evaluation at the
# demo's defaults (answer_defaults.json: retriever, top-k). An epoch took 2.5-20 minutes on 2
# shared cores, with the same dtype at 7-61 examples/s as neighbours came and went: compare EM
# here, not speed. EPOCHS shortens the schedule for all dtypes alike.
# Needs BUILD/bin/kvrag (BUILD=build by default).
set -euo pipefail

if [[ $# -lt 1 ]]; then
  sed -n '2,/^set -e/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//'
  exit 2
fi
W=$(cd "$1" && pwd)
shift
DTYPES=("$@")
[[ ${#DTYPES[@]} -gt 0 ]] || DTYPES=(fp32 bf16 int8)
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
KVRAG=${BUILD:-$HERE/../build}/bin/kvrag
[[ -x $KVRAG ]] || {
  echo "prefix_dtypes.sh: $KVRAG not found; build it first" >&2
  exit 1
}
for f in llm retriever index questions-knowledge.jsonl questions-dev.jsonl \
  questions-test.jsonl knowledge-passages.jsonl; do
  [[ -e $W/$f ]] || {
    echo "prefix_dtypes.sh: $W/$f not found: not a finished demo workspace" >&2
    exit 1
  }
done

SEED=${SEED:-1}
SUFFIX=$([[ $SEED == 1 ]] || echo "-s$SEED")
for dt in "${DTYPES[@]}"; do
  echo "[$(date +%T)] $dt: training through the LLM in $dt" >&2
  "$KVRAG" train-prefix --llm "$W/llm" --llm-dtype "$dt" --init "$W/retriever" \
    --train "$W/questions-knowledge.jsonl" --dev "$W/questions-dev.jsonl" --max-dev 100 \
    --oracle --passages "$W/knowledge-passages.jsonl" --top-k 1 \
    --readout tokens --llm-embeddings --segment-tokenizer llm --key-position answer \
    --max-segment-tokens 130 --head-std 0.05 --group-by-length --max-new-tokens 16 \
    --lr 3e-3 --warmup 20 --epochs "${EPOCHS:-3}" --batch-size 16 --seed "$SEED" \
    --out "$W/ke-$dt$SUFFIX" --json >"$W/ke-$dt$SUFFIX.train.json"
  echo "[$(date +%T)] $dt: evaluating on the test questions" >&2
  "$KVRAG" eval --workspace "$W" --knowledge-encoder "$W/ke-$dt$SUFFIX" --dtype "$dt" \
    --questions "$W/questions-test.jsonl" --modes prefix --max-new-tokens 16 \
    --json >"$W/ke-$dt$SUFFIX.eval.json"
done

/usr/bin/python3 - "$W" "$SUFFIX" "${DTYPES[@]}" <<'EOF'
import json, sys
w, suffix, dtypes = sys.argv[1], sys.argv[2], sys.argv[3:]
print("| LLM dtype in training and answering | test EM (prefix) | test F1 | best dev EM | examples/s | peak RSS |")
print("|---|---|---|---|---|---|")
for dt in dtypes:
    t = json.loads(open(f"{w}/ke-{dt}{suffix}.train.json").read().strip().splitlines()[-1])
    e = json.loads(open(f"{w}/ke-{dt}{suffix}.eval.json").read())
    p = e["prefix"]
    print(f"| {dt} | {p['em']:.3f} | {p['f1']:.3f} | {t['best_dev_em']:.3f} | "
          f"{t['examples_per_s']:.1f} | {t['peak_rss_bytes'] / 1e9:.2f} GB |")
EOF
