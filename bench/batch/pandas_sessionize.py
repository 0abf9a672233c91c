"""Sessionizes a clickstream JSON-lines file with pandas, the way users do it
today: a new session after more than GAP_MS of inactivity. Prints one JSON
line: events, sessions, seconds."""
import json
import sys
import time

import pandas as pd

path = sys.argv[1]
gap_ms = int(sys.argv[2]) if len(sys.argv) > 2 else 1_800_000
started = time.perf_counter()
sessions = 0
events = 0
frames = []
for chunk in pd.read_json(path, lines=True, chunksize=1_000_000, dtype={"event_timestamp": "int64", "uuid": "str"}):
    frames.append(chunk[["uuid", "event_timestamp"]])
df = pd.concat(frames, ignore_index=True)
df = df.sort_values(["uuid", "event_timestamp"], kind="stable")
gap = df.groupby("uuid")["event_timestamp"].diff()
starts = gap.isna() | (gap > gap_ms)
df["sid"] = starts.cumsum()
per_session = df.groupby("sid").agg(start=("event_timestamp", "min"), end=("event_timestamp", "max"), n=("uuid", "size"))
print(json.dumps({"tool": "pandas", "events": int(per_session["n"].sum()), "sessions": int(len(per_session)),
                  "seconds": time.perf_counter() - started}))
