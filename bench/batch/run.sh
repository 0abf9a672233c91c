#!/usr/bin/env bash
# Batch sessionization side by side on one file: starter sessionize, DuckDB
# (SQL window functions) and pandas, all with the same rule (a new session
# after 30 minutes of inactivity, no maximum), so their session counts must
# agree.
#
# Usage: bench/batch/run.sh [events [rounds]]
#   events  BATCH_EVENTS, default 10,000,000
#   rounds  ROUNDS, default 5: each round runs every tool once, interleaved
#           (starter, DuckDB, pandas, starter, ...), and the table gives each
#           tool's median and spread and the median of the per-round ratios.
# Environment:
#   BATCH_DIR  where the generated file is kept (default .dev/bench)
#   TOOLS      what runs, in round order (default "bin/starter duckdb pandas");
#              any starter binary's path, e.g. TOOLS="bin/starter /tmp/old duckdb"
set -euo pipefail
cd "$(dirname "$0")/../.."
events=${1:-${BATCH_EVENTS:-10000000}}
rounds=${2:-${ROUNDS:-5}}
dir=${BATCH_DIR:-.dev/bench}
tools=${TOOLS:-bin/starter duckdb pandas}
file=$dir/clicks-$events.jsonl
mkdir -p "$dir"
if [ ! -f "$file" ]; then
  bin/starter generate --num-users 100000 --events "$events" --out "$file.tmp" && mv "$file.tmp" "$file"
fi
if [[ " $tools " == *" duckdb "* ]]; then
  (cd bench/batch && [ -d node_modules/@duckdb/node-api ] || npm install --no-audit --no-fund --no-save --silent)
fi

# Every tool reads the file from the page cache: read it once first, so that
# the first round does not pay for the disk.
cat "$file" >/dev/null
cached=$(fincore --noheadings --output RES --bytes "$file" 2>/dev/null || echo "?")
size=$(du -m "$file" | cut -f1)
echo "file: $file ($events events, ${size} MB, ${cached} bytes in the page cache, 100,000 users)" >&2
echo "machine: $(nproc) cores, $(free -g | awk '/Mem:/{print $2}') GiB, load $(cut -d' ' -f1-3 /proc/loadavg); commit $(git rev-parse --short HEAD 2>/dev/null || echo '?'); $rounds rounds of: $tools" >&2

# shellcheck disable=SC2086 # tools is a list
/usr/bin/python3 bench/batch/rounds.py "$file" "$rounds" $tools
