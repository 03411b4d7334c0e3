#!/usr/bin/env bash
# kvrag's LLaMA against llama.cpp on the same random weights, side by side in one run: prefill and
# decode tokens/s for fp32, bf16 and int8 (llama.cpp's q8_0), the ratios, each decode's bytes of
# weights per second against this machine's memory read stream, and peak resident memory.
#
#   bench/compare_llamacpp.sh LLAMA_CPP_DIR [SIZE...]      # SIZE: 110m 1b 7b (default: 110m 1b)
#
# 7b needs disk for 27 GB fp32 + 13.5 GB bf16 checkpoints and GGUFs, and llama.cpp's converter
# holds the fp32 weights in memory (more than a 24 GB machine has): on such a machine, measure
# kvrag's 7B alone with bench_llama (README, "Real-size LLaMA against llama.cpp").
#
# LLAMA_CPP_DIR: a llama.cpp checkout built outside this repository with llama-bench and
# llama-quantize (steps in ../shared/bench/README.md; tested with snapshot c392e50). llama.cpp
# is a reference only, never a dependency. Needs ../shared (or $KVRAG_SHARED) for the checkpoint
# writer, /usr/bin/python3 with python3-torch, python3-numpy, python3-sentencepiece and
# python3-tqdm for llama.cpp's converter, and BUILD/bin/bench_llama (BUILD=build by default).
#
# Checkpoints go to $KVRAG_LLM_WORK (default: a temporary folder removed at exit; set it to keep
# them between runs: a 1b costs 4.4 GB fp32 + 2.2 GB bf16 + GGUFs). Both engines read the same
# weights: make_hf_llama.py writes each size in fp32 and in bf16 (the same numbers rounded);
# llama.cpp converts the fp32 one and quantizes it to bf16 and q8_0; kvrag reads the fp32 one
# for fp32 and the bf16 one for bf16 and int8 (quantized at load), as a user with a bf16
# checkpoint would.
#
# Settings (environment): THREADS (2), PROMPT (128), NEW (64), REPEATS (3), STREAM_MB (1024),
# ROUNDS (1). With ROUNDS > 1 each dtype's pair of runs (llama.cpp, then kvrag) is repeated that
# many times in turn and each figure is the median of its rounds, the read stream too (measured
# with every kvrag run, as is bench_llama's paired ratio: each decode run against a read as long
# right after it, printed as "kvrag paired"): on a shared machine whose memory bandwidth drifts by 1.5x within
# minutes, alternating keeps the two sides' conditions alike, and the median drops a round whose
# prefill was slowed (bench_llama's decode is a difference of two timings, which such a round
# inflates: one gave 1.1B fp32 decode at 129% of the read stream). DTYPES ("fp32 bf16 int8"):
# the dtypes to run, e.g. DTYPES=fp32 after a change to fp32 products only.
set -euo pipefail

if [[ $# -lt 1 ]]; then
  sed -n '2,/^set -e/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//'
  exit 2
fi
LCPP=$(cd "$1" && pwd)
shift
SIZES=("$@")
[[ ${#SIZES[@]} -gt 0 ]] || SIZES=(110m 1b)

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
BUILD=${BUILD:-$HERE/../build}
SHARED=${KVRAG_SHARED:-$HERE/../../shared}
PY=/usr/bin/python3
THREADS=${THREADS:-2}
PROMPT=${PROMPT:-128}
NEW=${NEW:-64}
REPEATS=${REPEATS:-3}
STREAM_MB=${STREAM_MB:-1024}
ROUNDS=${ROUNDS:-1}
DTYPES=${DTYPES:-fp32 bf16 int8}

die() {
  echo "compare_llamacpp.sh: $*" >&2
  exit 1
}
for f in "$LCPP/build/bin/llama-bench" "$LCPP/build/bin/llama-quantize" \
  "$LCPP/convert_hf_to_gguf.py" "$BUILD/bin/bench_llama" "$SHARED/bench/make_hf_llama.py"; do
  [[ -e $f ]] || die "$f not found"
done
$PY -c "import torch, numpy, sentencepiece, tqdm" 2>/dev/null ||
  die "$PY needs python3-torch, python3-numpy, python3-sentencepiece and python3-tqdm"

if [[ -n ${KVRAG_LLM_WORK:-} ]]; then
  WORK=$KVRAG_LLM_WORK
  mkdir -p "$WORK"
else
  WORK=$(mktemp -d "${TMPDIR:-/tmp}/kvrag-llamacpp-XXXXXX")
  trap 'rm -rf "$WORK"' EXIT
fi
RESULTS=$WORK/results.jsonl
: >"$RESULTS"
START=$SECONDS
step() { printf '[%4ds] %s\n' $((SECONDS - START)) "$*" >&2; }

# llama.cpp's converter on Debian's torch 1.13: no float8 dtypes, no torch.load(mmap=...).
CONVERT=$WORK/convert_torch113.py
sed -e 's/^\(\s*"F8_E4M3": torch.float8_e4m3fn,\)/#\1/' \
  -e 's/^\(\s*"F8_E5M2": torch.float8_e5m2,\)/#\1/' \
  -e 's/, mmap=True//' "$LCPP/convert_hf_to_gguf.py" >"$CONVERT"

# Writes WORK/SIZE-{f32,bf16} (HF layout) and WORK/SIZE-{f32,bf16,q8_0}.gguf unless present.
prepare() {
  local size=$1 d=$WORK
  for dt in f32 bf16; do
    if [[ ! -s $d/hf$size-$dt/model.safetensors ]]; then
      step "$size: writing the random $dt checkpoint"
      $PY "$SHARED/bench/make_hf_llama.py" "$d/hf$size-$dt" "$size" --dtype "$dt" >&2
    fi
  done
  if [[ ! -s $d/$size-q8_0.gguf ]]; then
    step "$size: converting for llama.cpp (its converter, then llama-quantize)"
    $PY "$SHARED/bench/safetensors_to_bin.py" "$d/hf$size-f32" "$d/bin$size" >&2
    PYTHONPATH=$LCPP/gguf-py $PY "$CONVERT" "$d/bin$size" --outtype f32 \
      --outfile "$d/$size-f32.gguf" >"$d/convert-$size.log" 2>&1 ||
      die "llama.cpp's converter failed, see $d/convert-$size.log"
    rm -rf "$d/bin$size"
    for q in bf16 q8_0; do
      "$LCPP/build/bin/llama-quantize" "$d/$size-f32.gguf" "$d/$size-$q.gguf.tmp" "$q" \
        >"$d/quantize-$size-$q.log" 2>&1 || die "llama-quantize failed, see $d/quantize-$size-$q.log"
      mv "$d/$size-$q.gguf.tmp" "$d/$size-$q.gguf"
    done
  fi
}

# One JSON line per measurement: {"size", "engine", "dtype", "prefill", "decode", "peak_rss", …}.
run_llamacpp() {
  local size=$1 dtype=$2 gguf=$3
  step "$size $dtype: llama.cpp"
  /usr/bin/time -f '%M' -o "$WORK/time.txt" "$LCPP/build/bin/llama-bench" -m "$gguf" \
    -p "$PROMPT" -n "$NEW" -t "$THREADS" -r "$REPEATS" -o json >"$WORK/out.json" 2>/dev/null ||
    die "llama-bench failed on $gguf"
  $PY - "$size" "$dtype" "$(cat "$WORK/time.txt")" "$WORK/out.json" >>"$RESULTS" <<'EOF'
import json, sys
size, dtype, peak_kb = sys.argv[1], sys.argv[2], int(sys.argv[3])
rows = json.load(open(sys.argv[4]))
pp = next(r for r in rows if r["n_prompt"] > 0 and r["n_gen"] == 0)
tg = next(r for r in rows if r["n_gen"] > 0 and r["n_prompt"] == 0)
print(json.dumps({"size": size, "engine": "llama.cpp", "dtype": dtype, "prefill": pp["avg_ts"],
                  "decode": tg["avg_ts"], "peak_rss": peak_kb * 1024,
                  "weight_bytes": pp["model_size"], "cpu": pp.get("cpu_info", "")}))
EOF
}

run_kvrag() {
  local size=$1 dtype=$2 dir=$3 stream=$4
  step "$size $dtype: kvrag"
  "$BUILD/bin/bench_llama" --model "$dir" --dtype "$dtype" --prompt-len "$PROMPT" \
    --new-tokens "$NEW" --threads "$THREADS" --repeats "$REPEATS" --stream-mb "$stream" \
    --json >"$WORK/out.json" || die "bench_llama failed on $dir ($dtype)"
  $PY - "$size" "$dtype" "$WORK/out.json" >>"$RESULTS" <<'EOF'
import json, sys
r = json.loads(open(sys.argv[3]).read().strip().splitlines()[-1])
print(json.dumps({"size": sys.argv[1], "engine": "kvrag", "dtype": sys.argv[2],
                  "prefill": r["prefill_tok_s"], "decode": r["decode_tok_s"],
                  "peak_rss": r["peak_rss"], "weight_bytes": r["weight_bytes"],
                  "read_gb_s": r["read_gb_s"], "paired": r.get("paired_ratio"), "cpu": r["cpu"]}))
EOF
}

for size in "${SIZES[@]}"; do
  prepare "$size"
  for pair in "fp32 f32 f32" "bf16 bf16 bf16" "int8 q8_0 bf16"; do
    read -r dtype gguf hf <<<"$pair"
    [[ " $DTYPES " == *" $dtype "* ]] || continue
    for ((round = 1; round <= ROUNDS; round++)); do
      run_llamacpp "$size" "$dtype" "$WORK/$size-$gguf.gguf"
      run_kvrag "$size" "$dtype" "$WORK/hf$size-$hf" "$STREAM_MB"
    done
  done
done

step "done"
$PY - "$RESULTS" "$THREADS" "$PROMPT" "$NEW" <<'EOF'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
threads, prompt, new = sys.argv[2:5]
read = statistics.median(r["read_gb_s"] for r in rows if r.get("read_gb_s"))
kv = next(r for r in rows if r["engine"] == "kvrag")
rounds = sum(1 for r in rows if r["engine"] == "kvrag" and r["size"] == kv["size"]
             and r["dtype"] == kv["dtype"])
print(f"CPU features: {kv['cpu']}; {threads} threads; prompt {prompt}, {new} new tokens; "
      f"memory read stream {read:.1f} GB/s" + (f" (median of {rounds} rounds, as each figure)"
                                              if rounds > 1 else ""))
print("decode GB/s = bytes of weights a step reads x tokens/s (llama.cpp: its model size)\n")
print("| model | dtype | llama.cpp prefill / decode | kvrag prefill / decode | ratio prefill / decode "
      "| decode GB/s llama.cpp / kvrag (of read) | peak RSS llama.cpp / kvrag |")
print("|---|---|---|---|---|---|---|")
by = {}  # over the rounds: the median of each speed, the largest peak RSS
for r in rows:
    by.setdefault((r["size"], r["engine"], r["dtype"]), []).append(r)
for key, rounds in by.items():
    b = dict(rounds[0])
    for f in ("prefill", "decode"):
        b[f] = statistics.median(r[f] or 0 for r in rounds)
    b["peak_rss"] = max(r["peak_rss"] for r in rounds)
    paired = [r["paired"] for r in rounds if r.get("paired")]
    b["paired"] = statistics.median(paired) if paired else None
    by[key] = b
for (size, engine, dtype), k in by.items():
    if engine != "kvrag": continue
    l = by[(size, "llama.cpp", dtype)]
    gb = lambda r: r["weight_bytes"] * r["decode"] / 1e9 if r["decode"] else 0.0
    print(f"| {size} | {dtype}{' (q8_0)' if dtype == 'int8' else ''} "
          f"| {l['prefill']:,.1f} / {l['decode']:,.1f} | {k['prefill']:,.1f} / {k['decode'] or 0:,.1f} "
          f"| {k['prefill'] / l['prefill']:.2f}x / {(k['decode'] or 0) / l['decode']:.2f}x "
          f"| {gb(l):.1f} / {gb(k):.1f} ({gb(l) / read:.0%} / {gb(k) / read:.0%}"
          + (f"; kvrag paired: {k['paired']:.0%}" if k["paired"] else "") + ") "
          f"| {l['peak_rss'] / 1e9:.2f} / {k['peak_rss'] / 1e9:.2f} GB |")
EOF
