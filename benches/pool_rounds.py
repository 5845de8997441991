#!/usr/bin/env python3
"""Pools the rounds of benches/inference-vs-llama-bench.sh for one tag.

Reads DIR/llama-bench-<tag>-<round>.json (llama-bench -o json) and
DIR/troupe-<tag>-<round>.json (troupe bench inference --json) of every round
and writes OUT/llama-bench-<tag>.json and OUT/troupe-<tag>.json in the same
formats, each statistic's samples being every round's samples together (avg
and stddev recomputed over them), for compare_inference.py.

Usage: pool_rounds.py DIR TAG OUT
"""
import json
import statistics
import sys
from pathlib import Path


def summary(samples):
    return {
        "avg": statistics.fmean(samples),
        "stddev": statistics.stdev(samples) if len(samples) > 1 else 0.0,
        "samples": samples,
    }


def main():
    src, tag, out = Path(sys.argv[1]), sys.argv[2], Path(sys.argv[3])
    lb_rounds = sorted(src.glob(f"llama-bench-{tag}-*.json"))
    tr_rounds = sorted(src.glob(f"troupe-{tag}-*.json"))
    if not lb_rounds or not tr_rounds:
        sys.exit(f"pool_rounds: no rounds for {tag} in {src}")
    pooled = {}
    for path in lb_rounds:
        for record in json.loads(path.read_text()):
            key = (record["n_prompt"], record["n_gen"], record["n_threads"])
            if key not in pooled:
                pooled[key] = dict(record, samples_ts=[])
            pooled[key]["samples_ts"] += record["samples_ts"]
    records = []
    for record in pooled.values():
        s = summary(record["samples_ts"])
        record["avg_ts"], record["stddev_ts"] = s["avg"], s["stddev"]
        records.append(record)
    (out / f"llama-bench-{tag}.json").write_text(json.dumps(records, indent=1))
    troupe = None
    for path in tr_rounds:
        round_ = json.loads(path.read_text())
        if troupe is None:
            troupe = round_
            continue
        for key in ("pp_tokens_per_s", "tg_tokens_per_s", "ttft_ms", "tg_constrained_tokens_per_s"):
            if isinstance(round_.get(key), dict) and isinstance(troupe.get(key), dict):
                troupe[key]["samples"] += round_[key]["samples"]
    for key in ("pp_tokens_per_s", "tg_tokens_per_s", "ttft_ms", "tg_constrained_tokens_per_s"):
        if isinstance(troupe.get(key), dict):
            troupe[key] = summary(troupe[key]["samples"])
    troupe["reps"] = sum(1 for _ in tr_rounds) * troupe.get("reps", 1)
    (out / f"troupe-{tag}.json").write_text(json.dumps(troupe, indent=1))


if __name__ == "__main__":
    main()
