#!/usr/bin/env python3
"""Compares troupe's inference throughput with llama-bench's, model by model.

Reads, from one directory, pairs of files that share a tag:

  llama-bench-<tag>.json  llama-bench's `-o json` output: a list of test
                          records (n_prompt, n_gen, avg_ts, stddev_ts,
                          n_threads, model_filename, ...)
  troupe-<tag>.json       `troupe bench inference --json`: {"model", "threads",
                          "n_prompt", "n_gen", "reps", "load_ms",
                          "pp_tokens_per_s": {"avg", "stddev", "samples"},
                          "tg_tokens_per_s": {...}, "ttft_ms": {...},
                          "tg_constrained_tokens_per_s": {...} or null,
                          "constrained_tokens": [...]}

and prints a markdown table (one row per test: prompt processing, generation,
generation under a JSON schema) with the troupe / llama-bench ratio against
its target, then writes the same rows as JSON. The constrained row compares
troupe with itself (constrained / unconstrained generation), because
llama-bench has no grammar-constrained test.

Usage: compare_inference.py DIR [--json FILE] [--strict]
Exit status: 0, or 1 with --strict when a row fails its target, 2 when the
input is missing or malformed.
"""

import argparse
import json
import math
import sys
from pathlib import Path

# troupe must reach this share of llama-bench's throughput on the same model,
# threads and token counts.
TARGET_VS_LLAMA_BENCH = 0.97
# Grammar-constrained generation must keep this share of unconstrained speed.
TARGET_CONSTRAINED = 0.90


class InputError(Exception):
    """A benchmark file is missing, unreadable or not in the expected shape."""


def load_json(path):
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except OSError as e:
        raise InputError(f"{path}: cannot read: {e}") from e
    except json.JSONDecodeError as e:
        raise InputError(f"{path}: not JSON: {e}") from e


def number(obj, key, path):
    value = obj.get(key) if isinstance(obj, dict) else None
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
        raise InputError(f"{path}: '{key}' is {value!r}, expected a finite number")
    return float(value)


def stat(obj, key, path):
    """Returns (avg, stddev) of a troupe statistic, or None when it is null."""
    value = obj.get(key)
    if value is None:
        return None
    if not isinstance(value, dict):
        raise InputError(f"{path}: '{key}' is {value!r}, expected an object with avg and stddev")
    return number(value, "avg", f"{path}: {key}"), number(value, "stddev", f"{path}: {key}")


def llama_bench_test(records, path, n_prompt, n_gen, threads, notes):
    """Finds llama-bench's record for one test, preferring troupe's thread count."""
    matching = []
    for r in records:
        if not isinstance(r, dict):
            raise InputError(f"{path}: a record is {r!r}, expected an object")
        if int(number(r, "n_prompt", path)) == n_prompt and int(number(r, "n_gen", path)) == n_gen:
            matching.append(r)
    if not matching:
        raise InputError(f"{path}: no test with n_prompt={n_prompt} n_gen={n_gen}")
    same_threads = [r for r in matching if r.get("n_threads") == threads]
    chosen = (same_threads or matching)[0]
    if not same_threads:
        notes.append(
            f"{path.name}: no n_prompt={n_prompt} n_gen={n_gen} test ran with {threads} "
            f"threads; compared with the one at {chosen.get('n_threads')} threads"
        )
    return number(chosen, "avg_ts", path), number(chosen, "stddev_ts", path)


def row(tag, test, base, troupe, target, baseline_name):
    ratio = troupe[0] / base[0] if base and base[0] > 0 else None
    return {
        "tag": tag,
        "test": test,
        "baseline": baseline_name,
        "baseline_tokens_per_s": base[0],
        "llama_bench_tokens_per_s": base[0] if baseline_name == "llama-bench" else None,
        "llama_bench_stddev": base[1] if baseline_name == "llama-bench" else None,
        "troupe_tokens_per_s": troupe[0],
        "troupe_stddev": troupe[1],
        "ratio": ratio,
        "target": target,
        "pass": ratio is not None and ratio >= target,
    }


def compare_pair(tag, lb_path, tr_path, notes):
    records = load_json(lb_path)
    if not isinstance(records, list):
        raise InputError(f"{lb_path}: expected a list of test records (llama-bench -o json)")
    tr = load_json(tr_path)
    if not isinstance(tr, dict):
        raise InputError(f"{tr_path}: expected an object (troupe bench inference --json)")
    threads = int(number(tr, "threads", tr_path))
    n_prompt = int(number(tr, "n_prompt", tr_path))
    n_gen = int(number(tr, "n_gen", tr_path))

    rows = []
    pp = stat(tr, "pp_tokens_per_s", tr_path)
    if pp is None:
        raise InputError(f"{tr_path}: 'pp_tokens_per_s' is null")
    lb_pp = llama_bench_test(records, lb_path, n_prompt, 0, threads, notes)
    rows.append(row(tag, f"pp{n_prompt}", lb_pp, pp, TARGET_VS_LLAMA_BENCH, "llama-bench"))

    tg = stat(tr, "tg_tokens_per_s", tr_path)
    if tg is None:
        raise InputError(f"{tr_path}: 'tg_tokens_per_s' is null")
    lb_tg = llama_bench_test(records, lb_path, 0, n_gen, threads, notes)
    rows.append(row(tag, f"tg{n_gen}", lb_tg, tg, TARGET_VS_LLAMA_BENCH, "llama-bench"))

    constrained = stat(tr, "tg_constrained_tokens_per_s", tr_path)
    if constrained is None:
        notes.append(f"{tr_path.name}: no constrained-generation figures (tg_constrained_tokens_per_s is null)")
    else:
        rows.append(
            row(tag, f"tg{n_gen} json-schema", tg, constrained, TARGET_CONSTRAINED, "troupe unconstrained")
        )
    return rows


def fmt_ts(value, stddev):
    return "—" if value is None else f"{value:.2f} ± {stddev:.2f}"


def markdown(rows, notes):
    lines = [
        "| tag | test | llama-bench t/s | troupe t/s | ratio | target | result |",
        "|---|---|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        ratio = "—" if r["ratio"] is None else f"{r['ratio']:.3f}"
        if r["baseline"] != "llama-bench":
            ratio += " (vs troupe unconstrained)"
        lines.append(
            f"| {r['tag']} | {r['test']} "
            f"| {fmt_ts(r['llama_bench_tokens_per_s'], r['llama_bench_stddev'])} "
            f"| {fmt_ts(r['troupe_tokens_per_s'], r['troupe_stddev'])} "
            f"| {ratio} | {r['target']:.2f} | {'pass' if r['pass'] else 'FAIL'} |"
        )
    for n in notes:
        lines.append(f"\nNote: {n}")
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dir", type=Path, help="directory holding llama-bench-<tag>.json and troupe-<tag>.json")
    parser.add_argument("--json", type=Path, help="where to write the rows as JSON (default DIR/comparison.json)")
    parser.add_argument("--strict", action="store_true", help="exit 1 when any row misses its target")
    args = parser.parse_args()

    if not args.dir.is_dir():
        print(f"compare_inference: {args.dir} is not a directory", file=sys.stderr)
        return 2
    rows, notes = [], []
    try:
        for lb_path in sorted(args.dir.glob("llama-bench-*.json")):
            tag = lb_path.stem[len("llama-bench-"):]
            tr_path = args.dir / f"troupe-{tag}.json"
            if not tr_path.exists():
                notes.append(f"{lb_path.name} has no {tr_path.name}; tag '{tag}' skipped")
                continue
            rows.extend(compare_pair(tag, lb_path, tr_path, notes))
    except InputError as e:
        print(f"compare_inference: {e}", file=sys.stderr)
        return 2
    if not rows:
        print(f"compare_inference: no llama-bench-<tag>.json / troupe-<tag>.json pair in {args.dir}", file=sys.stderr)
        for n in notes:
            print(f"compare_inference: {n}", file=sys.stderr)
        return 2

    print(markdown(rows, notes))
    out = args.json or args.dir / "comparison.json"
    with open(out, "w", encoding="utf-8") as f:
        json.dump({"rows": rows, "notes": notes}, f, indent=2)
        f.write("\n")
    print(f"\n(JSON: {out})")
    return 1 if args.strict and not all(r["pass"] for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
