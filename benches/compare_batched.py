#!/usr/bin/env python3
"""Puts `troupe bench batched --json` next to llama-batched-bench's JSONL.

Usage: compare_batched.py --troupe T1.json [T2.json ...] --peer P1.jsonl [P2.jsonl ...]
                          [--target 0.95] [--json OUT]

Round i is the i-th troupe file and the i-th peer file
(benches/batched-vs-batched-bench.sh runs each side once per round, taking
turns). A troupe file run with -r N adds N rounds, and a peer file holding
N runs (N rows with the same pl) adds N, in order; per-round ratios need
both sides to have the same number of rounds.

Per number of sequences B and metric (S_PP, S_TG, S; both tools define
S_PP = B*PP/T_PP, S_TG = B*TG/T_TG, S = B*(PP+TG)/(T_PP+T_TG), see
src/cli/bench/batched.rs) it reports each side's median over rounds, the
ratio of the medians (troupe / peer), and the ratio within each round with
its median and range. The target applies to S_TG at the largest B and is
judged on the median per-round ratio: pairing each troupe run with the peer
run next to it in time cancels the machine's drift best (the ratio of
medians when the rounds cannot be paired).
"""

import argparse
import json
import statistics
import sys

METRICS = (("S_PP", "s_pp", "speed_pp"), ("S_TG", "s_tg", "speed_tg"), ("S", "s", "speed"))


def spread(values):
    return {
        "median": statistics.median(values),
        "min": min(values),
        "max": max(values),
        "samples": values,
    }


def load_troupe(paths):
    """(settings of the first report, {B: {metric: [one value per round]}})."""
    first = None
    rounds = {}
    for path in paths:
        with open(path) as f:
            report = json.load(f)
        settings = {k: report[k] for k in ("npp", "ntg", "threads")}
        if first is None:
            first = settings
        elif settings != first:
            sys.exit(f"compare_batched: {path} ran {settings}, the first file {first}")
        for case in report["cases"]:
            entry = rounds.setdefault(case["npl"], {name: [] for name, _, _ in METRICS})
            for name, key, _ in METRICS:
                entry[name].extend(case[key]["samples"])
    return first, rounds


def load_peer(paths, npp, ntg):
    """{B: {metric: [one value per run]}}, from the rows with this PP and TG."""
    rounds = {}
    for path in paths:
        with open(path) as f:
            for line in f:
                line = line.strip()
                if not line.startswith("{"):
                    continue
                row = json.loads(line)
                if row["pp"] != npp or row["tg"] != ntg:
                    continue
                entry = rounds.setdefault(row["pl"], {name: [] for name, _, _ in METRICS})
                for name, _, key in METRICS:
                    entry[name].append(row[key])
    return rounds


def ratio(a, b):
    return a / b if b else float("nan")


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--troupe", nargs="+", required=True, help="troupe bench batched --json reports, in round order")
    p.add_argument("--peer", nargs="+", required=True, help="llama-batched-bench JSONL files, in round order")
    p.add_argument("--target", type=float, default=0.95)
    p.add_argument("--json")
    args = p.parse_args()
    settings, ours = load_troupe(args.troupe)
    npp, ntg = settings["npp"], settings["ntg"]
    peer = load_peer(args.peer, npp, ntg)
    if not peer:
        sys.exit(f"compare_batched: no rows with pp={npp} tg={ntg} in {' '.join(args.peer)}")
    sizes = sorted(b for b in ours if b in peer)
    if not sizes:
        sys.exit("compare_batched: the two sides ran no common number of sequences")
    top, low = sizes[-1], sizes[0]
    n_ours = {len(ours[b]["S_TG"]) for b in sizes}
    n_peer = {len(peer[b]["S_TG"]) for b in sizes}
    paired = len(n_ours) == 1 and n_ours == n_peer
    counts = (
        f"{n_ours.pop()} rounds, taking turns"
        if paired
        else f"rounds not paired (troupe {sorted(n_ours)}, llama-batched-bench {sorted(n_peer)} per B)"
    )
    lines = [
        f"PP {npp}, TG {ntg}, threads {settings['threads']}, {counts}; t/s are medians over rounds",
        "",
        "| B | metric | llama-batched-bench t/s | troupe t/s | ratio of medians "
        "| per-round ratio: median | min–max | target | result |",
        "|---:|---|---:|---:|---:|---:|---|---:|---|",
    ]
    rows = []
    for b in sizes:
        for name, _, _ in METRICS:
            theirs, mine = spread(peer[b][name]), spread(ours[b][name])
            of_medians = ratio(mine["median"], theirs["median"])
            per_round = None
            if paired:
                per_round = spread([ratio(m, t) for m, t in zip(mine["samples"], theirs["samples"])])
            judged = per_round["median"] if per_round else of_medians
            target = args.target if (name == "S_TG" and b == top) else None
            result = "" if target is None else ("pass" if judged >= target else "FAIL")
            rows.append({"npl": b, "metric": name, "peer": theirs, "troupe": mine,
                         "ratio_of_medians": of_medians, "round_ratio": per_round,
                         "target": target, "result": result})
            round_cells = (
                f"{per_round['median']:.3f} | {per_round['min']:.3f}–{per_round['max']:.3f}"
                if per_round else " | "
            )
            lines.append(
                f"| {b} | {name} | {theirs['median']:.2f} | {mine['median']:.2f} | {of_medians:.3f} | "
                f"{round_cells} | {'' if target is None else f'{target:.2f}'} | {result} |"
            )
    if paired:
        # The rounds one by one show a drift (all ratios moving together)
        # or an odd round out.
        lines += [
            "",
            "S_TG per round (odd rounds ran llama-batched-bench first, even rounds troupe):",
            "",
            "| B | round | llama-batched-bench t/s | troupe t/s | ratio |",
            "|---:|---:|---:|---:|---:|",
        ]
        for b in sizes:
            for i, (t, m) in enumerate(zip(peer[b]["S_TG"], ours[b]["S_TG"]), start=1):
                lines.append(f"| {b} | {i} | {t:.2f} | {m:.2f} | {ratio(m, t):.3f} |")
    speedups = {}
    if top != low:
        speedups["troupe"] = ratio(statistics.median(ours[top]["S_TG"]), statistics.median(ours[low]["S_TG"]))
        speedups["llama-batched-bench"] = ratio(
            statistics.median(peer[top]["S_TG"]), statistics.median(peer[low]["S_TG"])
        )
        lines.append("")
        for who, x in speedups.items():
            lines.append(f"{who}: median S_TG at B={top} / B={low} = {x:.2f}×")
    print("\n".join(lines))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"npp": npp, "ntg": ntg, "threads": settings["threads"], "paired": paired,
                       "rows": rows, "tg_speedup": speedups}, f, indent=2)


if __name__ == "__main__":
    main()
