"""Runs the batch tools on one file, interleaved, and prints their medians.

Usage: rounds.py FILE ROUNDS TOOL...

A TOOL is "duckdb", "pandas" or the path of a starter binary. Each round runs
every tool once, in the order given (starter, duckdb, pandas, starter, ...),
so that a slow minute of a shared machine falls on all of them rather than on
one. Per tool it reports the median events/s over the rounds and their
spread (min-max), the peak resident memory (the largest of the rounds, from
wait4's rusage of that process), and for the first starter binary the median
of the per-round ratios to DuckDB and pandas. Each run's events/s is the
tool's events over its seconds: for starter the wall time of the whole
process, for DuckDB and pandas the time their script measures from before
opening the database or reading the file to the result (the interpreter's
start and imports excluded). Fails when the tools disagree on the number of
sessions.
"""
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time

GAP_MS = 1_800_000


def run_wait4(argv):
    """Runs argv; returns (stdout, stderr, wall seconds, peak RSS bytes).

    The outputs go to temporary files, not pipes, so that a chatty tool never
    blocks, and the child is reaped with wait4 for its own rusage."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        started = time.perf_counter()
        p = subprocess.Popen(argv, stdout=out, stderr=err)
        _, status, rusage = os.wait4(p.pid, 0)
        wall = time.perf_counter() - started
        p.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        o, e = out.read().decode(), err.read().decode(errors="replace")
    if p.returncode != 0:
        sys.exit("%s exited %d: %s" % (" ".join(argv), p.returncode, e[-2000:]))
    return o, e, wall, rusage.ru_maxrss * 1024


def starter(binary, path):
    _, err, wall, rss = run_wait4([binary, "sessionize", "--in", path, "--out", "/dev/null", "--max-duration", "0"])
    m = re.search(r"(\d+) lines, (\d+) events, .*-> (\d+) sessions", err)
    if not m:
        sys.exit("%s: no summary line in %r" % (binary, err[-500:]))
    return {"events": int(m.group(2)), "sessions": int(m.group(3)), "seconds": wall, "rss": rss}


def script(argv):
    out, _, _, rss = run_wait4(argv)
    r = json.loads(out.strip().splitlines()[-1])
    return {"events": r["events"], "sessions": r["sessions"], "seconds": r["seconds"], "rss": rss}


def tool_run(tool, path):
    here = os.path.dirname(os.path.abspath(__file__))
    if tool == "duckdb":
        return script(["node", os.path.join(here, "duckdb.mjs"), os.path.abspath(path), str(GAP_MS)])
    if tool == "pandas":
        return script(["/usr/bin/python3", os.path.join(here, "pandas_sessionize.py"), path, str(GAP_MS)])
    return starter(tool, path)


def main():
    path, rounds, tools = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
    results = {t: [] for t in tools}
    for i in range(rounds):
        line = []
        for t in tools:
            r = tool_run(t, path)
            r["rate"] = r["events"] / r["seconds"]
            results[t].append(r)
            line.append("%s %.2fM/s %.2fs %.2fGB" % (name(t), r["rate"] / 1e6, r["seconds"], r["rss"] / 1e9))
        print("round %d: %s" % (i + 1, "; ".join(line)), file=sys.stderr, flush=True)

    sessions = {name(t): {r["sessions"] for r in rs} for t, rs in results.items()}
    if len({s for ss in sessions.values() for s in ss}) != 1:
        sys.exit("session counts differ: %s" % sessions)

    first = next((t for t in tools if t not in ("duckdb", "pandas")), None)
    print("| tool | median events/s | spread (min–max) | median seconds | peak RSS | sessions |")
    print("|---|---:|---:|---:|---:|---:|")
    for t, rs in results.items():
        rates = [r["rate"] for r in rs]
        print("| %s | **%.2fM** | %.2f–%.2fM | %.2f | %.2f GB | %d |" % (
            name(t), statistics.median(rates) / 1e6, min(rates) / 1e6, max(rates) / 1e6,
            statistics.median(r["seconds"] for r in rs), max(r["rss"] for r in rs) / 1e9, rs[0]["sessions"]))
    if first is None:
        return
    print()
    for other in tools:
        if other == first:
            continue
        ratios = [a["rate"] / b["rate"] for a, b in zip(results[first], results[other])]
        print("%s ÷ %s, per round: %s; **median %.2fx** (min %.2fx, max %.2fx)" % (
            name(first), name(other), " ".join("%.2f" % x for x in ratios),
            statistics.median(ratios), min(ratios), max(ratios)))


def name(t):
    if t in ("duckdb", "pandas"):
        return {"duckdb": "DuckDB", "pandas": "pandas"}[t]
    return "starter (%s)" % t


if __name__ == "__main__":
    main()
