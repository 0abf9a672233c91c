#!/usr/bin/env bash
# Batch sessionization side by side on one file: starter sessionize, DuckDB
# (SQL window functions) and pandas, all with the same rule (a new session
# after 30 minutes of inactivity, no maximum), so their session counts must
# agree. Usage: bench/batch/run.sh [events] — default 10,000,000.
set -euo pipefail
cd "$(dirname "$0")/../.."
events=${1:-10000000}
file=.dev/bench/clicks-$events.jsonl
mkdir -p .dev/bench
if [ ! -f "$file" ]; then
  bin/starter generate --num-users 100000 --events "$events" --out "$file.tmp" && mv "$file.tmp" "$file"
fi
size=$(du -m "$file" | cut -f1)
echo "file: $file ($events events, ${size} MB, 100,000 users); machine: $(nproc) cores, $(free -g | awk '/Mem:/{print $2}') GiB" >&2

results=()
start=$(date +%s.%N)
out=$(bin/starter sessionize --in "$file" --out /dev/null --max-duration 0 2>&1 | tail -1)
end=$(date +%s.%N)
sessions=$(echo "$out" | sed -n 's/.*-> \([0-9]*\) sessions.*/\1/p')
results+=("{\"tool\":\"starter sessionize\",\"events\":$events,\"sessions\":$sessions,\"seconds\":$(echo "$end - $start" | bc)}")

(cd bench/batch && [ -d node_modules/@duckdb/node-api ] || npm install --no-audit --no-fund --silent)
results+=("$(node bench/batch/duckdb.mjs "$PWD/$file")")
results+=("$(/usr/bin/python3 bench/batch/pandas_sessionize.py "$file")")

printf '%s\n' "${results[@]}" | /usr/bin/python3 bench/batch/summarize.py
