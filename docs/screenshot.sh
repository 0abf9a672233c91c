#!/bin/sh
# Takes the README's Temporal UI screenshots from a running `make dev`:
#   docs/temporal-ui.png          the workflow list filtered by the session
#                                 query devstack prints
#   docs/temporal-ui-session.png  a closed clickstream session's page
# Needs Debian's chromium (apt-get install -y chromium); not run by CI.
# Usage: make dev   (in another terminal, until sessions have closed)
#        docs/screenshot.sh
set -eu
cd "$(dirname "$0")/.."

UI=${UI:-http://localhost:8233}
TEMPORAL_ADDRESS=${TEMPORAL_ADDRESS:-127.0.0.1:7233}
SIZE=${SIZE:-1440,900}
CHROMIUM=${CHROMIUM:-$(command -v chromium || command -v chromium-browser || true)}
[ -n "$CHROMIUM" ] || { echo "screenshot.sh: chromium not found (apt-get install -y chromium)" >&2; exit 1; }
curl -fsS -o /dev/null "$UI/" || { echo "screenshot.sh: no Temporal UI at $UI: run make dev first" >&2; exit 1; }

# The query devstack's banner prints, and a closed session's run (a closed
# run stays as it is while the browser loads it; a running one may not).
query="WorkflowType='SessionWorkflow' AND ExecutionStatus='Running' AND Pipeline='clickstream'"
session=$(bin/temporal workflow list --address "$TEMPORAL_ADDRESS" --limit 1 -o json --query \
  "WorkflowType='SessionWorkflow' AND Pipeline='clickstream' AND SessionState='closed' AND ExecutionStatus != 'Running' AND EventCount >= 8" |
  python3 -c 'import json,sys; e=json.load(sys.stdin)[0]["execution"]; print(e["workflowId"], e["runId"])' || true)
[ -n "$session" ] || { echo "screenshot.sh: no closed session with 8 events yet; try again shortly" >&2; exit 1; }
set -- $session
enc() { python3 -c 'import sys, urllib.parse; print(urllib.parse.quote(sys.argv[1], safe=""))' "$1"; }

shot() { # shot <file> <url> [size]
  profile=$(mktemp -d)
  # As root Chromium needs --no-sandbox; without the background-networking
  # flags its connections get refused here. The virtual time budget lets the
  # UI fetch and render its data before the capture.
  "$CHROMIUM" --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
    --disable-background-networking --disable-component-update --disable-sync \
    --user-data-dir="$profile" --hide-scrollbars --window-size="${3:-$SIZE}" \
    --virtual-time-budget=15000 --screenshot="$PWD/$1" "$2" 2>/dev/null
  rm -rf "$profile"
  echo "screenshot.sh: $1 ($(wc -c <"$1") bytes) <- $2"
}

shot docs/temporal-ui.png "$UI/namespaces/default/workflows?query=$(enc "$query")"
shot docs/temporal-ui-session.png "$UI/namespaces/default/workflows/$(enc "$1")/$2/history" 1440,1500
