"""Reads the tools' JSON result lines on stdin and prints a Markdown table
with each tool's rate relative to the first (starter sessionize). Fails when
the tools disagree on the number of sessions."""
import json
import sys

rows = [json.loads(line) for line in sys.stdin if line.strip()]
base = rows[0]["events"] / rows[0]["seconds"]
print("| tool | events/s | seconds | sessions | rate vs starter sessionize |")
print("|---|---:|---:|---:|---:|")
for r in rows:
    rate = r["events"] / r["seconds"]
    print("| %s | %.2fM | %.1f | %d | %.2fx |" % (r["tool"], rate / 1e6, r["seconds"], r["sessions"], rate / base))
counts = {r["tool"]: r["sessions"] for r in rows}
if len(set(counts.values())) != 1:
    sys.exit("session counts differ: %s" % counts)
