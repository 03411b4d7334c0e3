#!/usr/bin/env bash
# The README's real check on ../shared/data/nq-oracle with an LLM pre-trained by kvrag itself:
#   1. a SentencePiece tokenizer and a tiny LLaMA (preset tiny) pre-trained on the 2,600 passages
#      and on the train questions as in-context and closed-book question/answer pairs
#      (qa/prompt.h's format; the dev questions are never seen);
#   2. BM25 over the passages (one segment per passage);
#   3. a knowledge encoder over the frozen LLM, initialised from a BERT folder (ENCODER, e.g.
#      the retriever trained as in the README), trained with --oracle on the train questions;
#   4. kvrag eval of none / context / prefix on the dev questions, BM25 top-1.
# Usage: scripts/nq_real_check.sh ENCODER_DIR [WORKDIR]   (needs jq; ~20 minutes on 2 cores)
set -euo pipefail
ENCODER=${1:?usage: scripts/nq_real_check.sh ENCODER_DIR [WORKDIR]}
W=${2:-/tmp/kvrag-nq-check}
S=${KVRAG_SHARED:-$(cd "$(dirname "$0")/../.." && pwd)/shared}/data/nq-oracle
K=${KVRAG_BIN:-$(cd "$(dirname "$0")/.." && pwd)/build/bin/kvrag}
[ -f "$S/passages.jsonl" ] || { echo "no nq-oracle data at $S (set KVRAG_SHARED)" >&2; exit 1; }
mkdir -p "$W"

# Pre-training text: examples separated by blank lines, newlines inside a passage folded.
if [ ! -f "$W/lm.txt" ]; then
  jq -r '"\(.title): \(.text | gsub("\\s+"; " "))\n"' "$S/passages.jsonl" > "$W/lm.tmp"
  jq -rn --slurpfile P "$S/passages.jsonl" '
    ($P | map({key: (.id | tostring), value: .}) | from_entries) as $m
    | inputs | $m[(.gold_passage_id | tostring)] as $p
    | "Context: \($p.title): \($p.text | gsub("\\s+"; " "))\nQuestion: \(.question)\nAnswer: \(.answers[0])\n",
      "Question: \(.question)\nAnswer: \(.answers[0])\n"' "$S/questions-train.jsonl" >> "$W/lm.tmp"
  mv "$W/lm.tmp" "$W/lm.txt"
fi
[ -f "$W/tokenizer.model" ] || "$K" train-tokenizer --input "$W/lm.txt" --out "$W/tokenizer.model" --vocab-size 4000
"$K" train-lm --text "$W/lm.txt" --tokenizer "$W/tokenizer.model" --preset tiny --out "$W/llm" --context 384 \
  --epochs 1 --batch-size 8 --lr 3e-3 --min-lr 3e-4 --warmup 30 --answer-weight 5 --seed 1
[ -f "$W/index/segments.sqlite" ] ||
  "$K" segment --corpus "$S/passages.jsonl" --tokenizer "$ENCODER/vocab.txt" --index "$W/index" --window 512 --stride 256
"$K" train-prefix --llm "$W/llm" --init "$ENCODER" --train "$S/questions-train.jsonl" --dev "$S/questions-dev.jsonl" \
  --max-dev 50 --oracle --passages "$S/passages.jsonl" --max-segment-tokens 256 --prefix-length 16 --head-std 0.05 \
  --epochs 2 --batch-size 16 --lr 1e-3 --warmup 10 --seed 1 --out "$W/ke"
"$K" eval --llm "$W/llm" --index "$W/index" --retriever bm25 --knowledge-encoder "$W/ke" \
  --questions "$S/questions-dev.jsonl" --modes none,context,prefix --top-k 1 --max-new-tokens 16 \
  --predictions "$W/predictions-dev.jsonl" | tee "$W/results.md"
