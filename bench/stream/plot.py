"""Plots a streaming benchmark's results (go run ./bench/stream).

Usage: /usr/bin/python3 bench/stream/plot.py bench/results/stream-<date>.json

Writes, next to the results file, <name>-throughput.png (events offered and
accepted by Temporal, signals accepted and taken in by the workflows, per
second, per server) and <name>-lag.png (consumer lag per pipeline, the
worker's signal backlog and the running sessions, per server), and prints
their paths.
"""
import json
import os
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

SMOOTH = 5  # seconds: per-second rates are averaged over this many samples


def rate(timeline, field):
    """Per-second rate of a cumulative counter, smoothed; empty if the
    results file predates the counter."""
    ts, rs = [], []
    for a, b in zip(timeline, timeline[SMOOTH:]):
        dt = b["t"] - a["t"]
        if dt > 0 and field in a and field in b:
            ts.append(b["t"])
            rs.append((b[field] - a[field]) / dt)
    return ts, rs


def servers_with_timeline(results):
    return [s for s in results["servers"] if s.get("timeline")]


def mark_warmup(ax, results):
    ax.axvline(results["workload"]["warmup_s"], color="grey", linestyle=":", linewidth=1)


def throughput(results, out):
    servers = servers_with_timeline(results)
    fig, axes = plt.subplots(len(servers), 1, figsize=(12, 3.4 * len(servers)), sharex=True, squeeze=False)
    for ax, s in zip(axes[:, 0], servers):
        tl = s["timeline"]
        t, produced = rate(tl, "produced")
        ax.plot(t, produced, label="offered (produced to Kafka)", color="tab:grey")
        t, events = rate(tl, "events")
        ax.plot(t, events, label="events accepted by Temporal", color="tab:blue")
        t, handled = rate(tl, "handled_events")
        ax.plot(t, handled, label="events taken in by SessionWorkflows", color="tab:cyan", linestyle="--")
        t, signals = rate(tl, "signals")
        ax.plot(t, signals, label="signals accepted by Temporal", color="tab:orange", linewidth=1)
        t, handled = rate(tl, "handled")
        ax.plot(t, handled, label="signals taken in by SessionWorkflows", color="tab:brown", linewidth=1,
                linestyle="-.")
        ceiling = s.get("ceiling")
        if ceiling:
            ax.axhline(ceiling["signals_per_s"], color="tab:red", linestyle="--", linewidth=1,
                       label="no-op SignalWithStart ceiling (signals/s)")
        mark_warmup(ax, results)
        ax.set_title(s["server"])
        ax.set_ylabel("per second")
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1))
    axes[-1, 0].set_xlabel("seconds since the generator started (dotted: end of warmup)")
    fig.suptitle("Streaming throughput, %s" % results["date"])
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


def lag(results, out):
    servers = servers_with_timeline(results)
    fig, axes = plt.subplots(len(servers), 1, figsize=(12, 3.4 * len(servers)), sharex=True, squeeze=False)
    for ax, s in zip(axes[:, 0], servers):
        tl = s["timeline"]
        t = [x["t"] for x in tl]
        for p in sorted({p for x in tl for p in x.get("lag", {})}):
            ax.plot(t, [x.get("lag", {}).get(p, 0) for x in tl], label="consumer lag: %s (messages)" % p)
        ax.plot(t, [x["signals"] - x.get("handled", 0) for x in tl], color="tab:brown", linestyle="-.",
                label="worker backlog (signals accepted, not taken in)")
        ax.set_ylabel("messages / signals")
        ax.set_ylim(bottom=0)
        right = ax.twinx()
        opened = [(x["t"], x["open_sessions"]) for x in tl if x["open_sessions"] >= 0]
        if opened:
            right.plot([a for a, _ in opened], [b for _, b in opened], color="tab:green", linestyle="--",
                       label="running SessionWorkflows")
        right.set_ylabel("sessions")
        right.set_ylim(bottom=0)
        mark_warmup(ax, results)
        ax.set_title(s["server"])
        ax.grid(alpha=0.3)
        lines = ax.get_legend_handles_labels()
        more = right.get_legend_handles_labels()
        ax.legend(lines[0] + more[0], lines[1] + more[1], fontsize=8, loc="upper left", bbox_to_anchor=(1.08, 1))
    axes[-1, 0].set_xlabel("seconds since the generator started (dotted: end of warmup)")
    fig.suptitle("Consumer lag (high-water mark - committed offset), %s" % results["date"])
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    path = sys.argv[1]
    with open(path) as f:
        results = json.load(f)
    if not servers_with_timeline(results):
        sys.exit("%s: no server has a timeline to plot" % path)
    base = os.path.splitext(path)[0]
    for name, draw in (("throughput", throughput), ("lag", lag)):
        out = "%s-%s.png" % (base, name)
        draw(results, out)
        print(out)


if __name__ == "__main__":
    main()
