#!/usr/bin/env python3
"""Puts `troupe bench batched --json` next to llama-batched-bench's JSONL.

Usage: compare_batched.py TROUPE.json BATCHED-BENCH.jsonl [--target 0.95] [--json OUT]

BATCHED-BENCH.jsonl holds the lines of one or more runs (one per
repetition); lines with the same number of sequences (pl) are averaged.
Both define S_PP = B*PP/T_PP and S_TG = B*TG/T_TG (see
src/cli/bench/batched.rs). The target applies to S_TG at the largest B.
"""

import argparse
import json
import statistics
import sys


def stat(values):
    return {
        "avg": statistics.fmean(values),
        "stddev": statistics.stdev(values) if len(values) > 1 else 0.0,
        "samples": values,
    }


def main():
    p = argparse.ArgumentParser()
    p.add_argument("troupe")
    p.add_argument("peer")
    p.add_argument("--target", type=float, default=0.95)
    p.add_argument("--json")
    args = p.parse_args()
    with open(args.troupe) as f:
        ours = json.load(f)
    peer = {}
    with open(args.peer) as f:
        for line in f:
            line = line.strip()
            if not line.startswith("{"):
                continue
            row = json.loads(line)
            if row["pp"] != ours["npp"] or row["tg"] != ours["ntg"]:
                continue
            entry = peer.setdefault(row["pl"], {"speed_pp": [], "speed_tg": []})
            entry["speed_pp"].append(row["speed_pp"])
            entry["speed_tg"].append(row["speed_tg"])
    if not peer:
        sys.exit(f"compare_batched: no rows with pp={ours['npp']} tg={ours['ntg']} in {args.peer}")
    top = max(c["npl"] for c in ours["cases"])
    lines = [
        f"PP {ours['npp']}, TG {ours['ntg']}, threads {ours['threads']}, "
        f"{ours['reps']} reps each",
        "",
        "| B | metric | llama-batched-bench t/s | troupe t/s | ratio | target | result |",
        "|---:|---|---:|---:|---:|---:|---|",
    ]
    rows = []
    for case in ours["cases"]:
        b = case["npl"]
        if b not in peer:
            continue
        for metric, name, key in (("s_pp", "S_PP", "speed_pp"), ("s_tg", "S_TG", "speed_tg")):
            theirs = stat(peer[b][key])
            mine = case[metric]
            ratio = mine["avg"] / theirs["avg"] if theirs["avg"] else float("nan")
            target = args.target if (metric == "s_tg" and b == top) else None
            result = "" if target is None else ("pass" if ratio >= target else "FAIL")
            rows.append({"npl": b, "metric": name, "peer": theirs, "troupe": mine,
                         "ratio": ratio, "target": target, "result": result})
            lines.append(
                f"| {b} | {name} | {theirs['avg']:.2f} ± {theirs['stddev']:.2f} | "
                f"{mine['avg']:.2f} ± {mine['stddev']:.2f} | {ratio:.3f} | "
                f"{'' if target is None else f'{target:.2f}'} | {result} |"
            )
    low = min(c["npl"] for c in ours["cases"])
    speedups = {}
    if top != low:
        tg = {c["npl"]: c["s_tg"]["avg"] for c in ours["cases"]}
        speedups["troupe"] = tg[top] / tg[low] if tg[low] else None
        if top in peer and low in peer:
            speedups["llama-batched-bench"] = (
                statistics.fmean(peer[top]["speed_tg"]) / statistics.fmean(peer[low]["speed_tg"])
            )
        lines.append("")
        for who, x in speedups.items():
            if x is not None:
                lines.append(f"{who}: S_TG at B={top} / B={low} = {x:.2f}×")
    print("\n".join(lines))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"rows": rows, "tg_speedup": speedups}, f, indent=2)


if __name__ == "__main__":
    main()
