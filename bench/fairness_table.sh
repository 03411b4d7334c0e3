#!/usr/bin/env bash
# The fairness table of the README: the demo's knowledge encoder trained with each fairness
# term and weight (train-prefix --fairness-weight λ --fairness-loss KIND), then evaluated on the
# held-out test questions in prefix mode (EM overall) and on the fairness questions
# (qa/fairness_eval.h: EM per community, the stereotype gap, the counterfactual flip rate, the
# leakage probe), plus one row for context mode (the passages in the prompt, no encoder).
#
#   [EPOCHS=3] [SEED=1] bench/fairness_table.sh WORKSPACE [KIND:λ ...]
#       # default: none:0 counterfactual:1 counterfactual:4 decorrelation:1 decorrelation:10
#       # KIND balance: answer balancing (train-prefix --balance-answers λ), no term
#
# WORKSPACE: a finished `kvrag demo` workspace (the world with its communities, demo/world.h).
# Each run goes to WORKSPACE/fair-KIND-λ (resumed if interrupted, reused if finished); the
# demo's own knowledge_encoder/ is left alone. The settings are the demo's (src/demo/
# demo_pipeline.cpp, stage "knowledge"), as in bench/prefix_dtypes.sh; EPOCHS shortens the
# schedule for every run alike, so compare rows of one table, not with the demo's own encoder.
# Needs BUILD/bin/kvrag (BUILD=build by default).
set -euo pipefail

if [[ $# -lt 1 ]]; then
  sed -n '2,/^set -e/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//'
  exit 2
fi
W=$(cd "$1" && pwd)
shift
RUNS=("$@")
[[ ${#RUNS[@]} -gt 0 ]] ||
  RUNS=(none:0 counterfactual:1 counterfactual:4 decorrelation:1 decorrelation:10)
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
KVRAG=${BUILD:-$HERE/../build}/bin/kvrag
[[ -x $KVRAG ]] || {
  echo "fairness_table.sh: $KVRAG not found; build it first" >&2
  exit 1
}
for f in llm retriever index questions-knowledge.jsonl questions-dev.jsonl \
  questions-test.jsonl questions-fairness.jsonl knowledge-passages.jsonl; do
  [[ -e $W/$f ]] || {
    echo "fairness_table.sh: $W/$f not found: not a finished demo workspace with communities" >&2
    exit 1
  }
done

for run in "${RUNS[@]}"; do
  kind=${run%%:*}
  weight=${run#*:}
  out="$W/fair-$kind-$weight"
  flags=(--fairness-weight "$weight")
  if [[ $kind == balance ]]; then
    flags=(--fairness-weight 0 --balance-answers "$weight")
  elif [[ $kind != none ]]; then
    flags+=(--fairness-loss "$kind")
  fi
  echo "[$(date +%T)] $kind λ=$weight: training" >&2
  "$KVRAG" train-prefix --llm "$W/llm" --init "$W/retriever" \
    --train "$W/questions-knowledge.jsonl" --dev "$W/questions-dev.jsonl" --max-dev 100 \
    --oracle --passages "$W/knowledge-passages.jsonl" --top-k 1 \
    --readout tokens --llm-embeddings --segment-tokenizer llm --key-position answer \
    --max-segment-tokens 130 --head-std 0.05 --group-by-length --max-new-tokens 16 \
    --lr 3e-3 --warmup 20 --epochs "${EPOCHS:-3}" --batch-size 16 --seed "${SEED:-1}" \
    "${flags[@]}" --out "$out" --json >"$out.train.json"
  echo "[$(date +%T)] $kind λ=$weight: evaluating" >&2
  "$KVRAG" eval --workspace "$W" --knowledge-encoder "$out" --questions "$W/questions-test.jsonl" \
    --modes prefix --max-new-tokens 16 --fairness "$W/questions-fairness.jsonl" \
    --fairness-passages "$W/knowledge-passages.jsonl" --quiet --json >"$out.eval.json"
done

/usr/bin/python3 - "$W" "${RUNS[@]}" <<'EOF'
import json, sys
w, runs = sys.argv[1], sys.argv[2:]
print("| fairness loss | λ | test EM (prefix) | fairness EM | EM by community | stereotype gap "
      "(stereo − anti) | flip rate | leakage (probe acc.) |")
print("|---|---|---|---|---|---|---|---|")
for run in runs:
    kind, weight = run.split(":", 1)
    e = json.loads(open(f"{w}/fair-{kind}-{weight}.eval.json").read())
    f = e["fairness"]
    groups = " / ".join(f"{g['em']:.3f}" for g in f["groups"].values())
    leak = f["leakage"]["probe_accuracy"] if f["leakage"] else float("nan")
    print(f"| {kind} | {weight} | {e['prefix']['em']:.3f} | {f['em']:.3f} | {groups} "
          f"(gap {f['group_gap']:.3f}) | {f['stereotype_gap']:+.3f} "
          f"({f['stereotypical']['em']:.3f} − {f['anti_stereotypical']['em']:.3f}) | "
          f"{f['flip_rate']:.3f} | {leak:.3f} |")
# In-context RAG with the same frozen LLM and passages: no encoder, so one row for all.
c = json.loads(open(f"{w}/fair-{runs[0].replace(':', '-')}.eval.json").read())["fairness"].get("context")
if c:
    groups = " / ".join(f"{g['em']:.3f}" for g in c["groups"].values())
    print(f"| (context mode, no encoder) | – | – | {c['em']:.3f} | {groups} (gap {c['group_gap']:.3f}) | "
          f"{c['stereotype_gap']:+.3f} ({c['stereotypical']['em']:.3f} − "
          f"{c['anti_stereotypical']['em']:.3f}) | {c['flip_rate']:.3f} | – |")
EOF
