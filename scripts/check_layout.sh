#!/usr/bin/env bash
# Checks the layout rules of src/ (README, "Layout"); run by the test suite.
#  1. Layers: a folder includes only itself and the folders before it in LAYERS.
#  2. A source file has at most 800 lines; a file of src/cli/ fewer than 150 (a command declares
#     its options and calls one library function).
# Prints every violation and exits 1 if there is any.
set -euo pipefail
cd "$(dirname "$0")/.."

LAYERS=(core text eval checkpoint ops model prefix index train qa serve demo cli)
MAX_LINES=800
MAX_CLI_LINES=149

declare -A rank
for i in "${!LAYERS[@]}"; do rank[${LAYERS[$i]}]=$i; done

status=0
for dir in src/*/; do
  dir=${dir%/}; dir=${dir#src/}
  if [[ -z ${rank[$dir]+x} ]]; then
    echo "src/$dir: a folder that is not a layer (add it to LAYERS here and to the README)"
    status=1
  fi
done

while IFS= read -r file; do
  from=${file#src/}; from=${from%%/*}
  # #include "dir/name.h" lines: the folder of each.
  while IFS=: read -r line to; do
    [[ -z ${rank[$to]+x} ]] && continue   # not a src/ folder (a third-party header)
    if (( rank[$to] > rank[$from] )); then
      echo "$file:$line: includes $to/, a layer above $from/ (order: ${LAYERS[*]})"
      status=1
    fi
  done < <(grep -n -o -E '^[[:space:]]*#[[:space:]]*include[[:space:]]+"[a-z_]+/' "$file" |
           sed -E 's/^([0-9]+):.*"([a-z_]+)\/$/\1:\2/')
  lines=$(wc -l < "$file")
  limit=$MAX_LINES
  [[ $from == cli ]] && limit=$MAX_CLI_LINES
  if (( lines > limit )); then
    echo "$file: $lines lines (at most $limit in src/$from/)"
    status=1
  fi
done < <(find src -type f \( -name '*.h' -o -name '*.cpp' \) | sort)

(( status == 0 )) && echo "layout: ${#LAYERS[@]} layers, every include goes down, no file too long"
exit $status
