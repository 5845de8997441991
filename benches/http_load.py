#!/usr/bin/env python3
"""One HTTP load client for both troupe serve and llama-server (stdlib only).

Subcommands:
  wait   URL [--timeout S] [--since T]  poll URL/health until 200; print the
                                 seconds since T (a Unix time, e.g. when the
                                 server was spawned; default: now)
  launch --log FILE URL -- CMD... start CMD (a server), poll URL/health until
                                 200; print "PID SECONDS" (from the spawn);
                                 the server keeps running: the caller stops it
  run    --url URL --model NAME  K concurrent streaming requests, R rounds; JSON out
                                 (--api completions: /v1/completions; chat:
                                 /v1/chat/completions; ollama-chat: Ollama's
                                 /api/chat, NDJSON)
  compare A.json B.json ...      markdown table of troupe / llama-server: medians
                                 over the bench's rounds and per-round ratios

`run`: each round starts K requests at once (a barrier), each streaming
`max_tokens` tokens with `ignore_eos`, greedy. The prompt is a fixed text
with a per-request tag in front ("round-request: "), so that neither server
can reuse another request's KV cache (both match cached prefixes).
Figures per round:
  agg_tps   total completion tokens / (last [DONE] - first request sent)
  ttft_ms   per request: from sending to the first SSE chunk with text (troupe
            holds back a token's bytes until they form whole UTF-8
            characters, llama-server sends them as they come: on a
            random-weight model troupe's first text can lag its first token)
Completion tokens come from the final chunk's `usage` (stream_options
include_usage); both servers send it. One warm-up round is not counted
(troupe loads the model on its first request).

`compare`: benches/serve-vs-llama-server.sh starts each server once per
bench round, taking turns, and `run --round N` records N. Per stream count
it reports each server's median over bench rounds (a round's figure: its
generated t/s averaged over the client's rounds, and its TTFT p50), the
ratio of the medians, and the troupe / llama-server ratio within each bench
round (median and range): the pairs are close in time, so a drift of the
machine's speed cancels out of them. The target is judged on the median
per-round ratio (the ratio of medians when no round has both servers).
Reports without a round number count as rounds 1, 2, ... in the order given.
"""

import argparse
import http.client
import json
import statistics
import subprocess
import sys
import threading
import time
import urllib.parse

PROMPT = (
    "The quick brown fox jumps over the lazy dog while the committee reviews "
    "the quarterly report on renewable energy adoption in coastal regions."
)


def wait(args):
    if args.since is None:
        args.since = time.time()
    seconds = wait_quiet(args, None)
    if seconds is None:
        return 1
    print(f"{seconds:.4f}")
    return 0


def launch(args):
    cmd = args.cmd_line[1:] if args.cmd_line[:1] == ["--"] else args.cmd_line
    if not cmd:
        print("http_load: launch needs a command after --", file=sys.stderr)
        return 1
    with open(args.log, "wb") as log:
        start = time.time()
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    args.since = start
    code = wait_quiet(args, proc)
    if code is None:
        proc.kill()
        proc.wait()
        return 1
    print(f"{proc.pid} {code:.4f}")
    return 0


def wait_quiet(args, proc):
    """Seconds from args.since to /health 200, or None (timeout, or proc died)."""
    deadline = time.perf_counter() + args.timeout
    url = urllib.parse.urlsplit(args.url)
    while time.perf_counter() < deadline:
        if proc is not None and proc.poll() is not None:
            print(f"http_load: the server exited with {proc.returncode}", file=sys.stderr)
            return None
        try:
            conn = http.client.HTTPConnection(url.hostname, url.port, timeout=2)
            conn.request("GET", "/health")
            status = conn.getresponse().status
            conn.close()
            if status == 200:
                return time.time() - args.since
        except OSError:
            pass
        time.sleep(0.002)
    print(f"http_load: {args.url}/health not 200 after {args.timeout} s", file=sys.stderr)
    return None


# The path each --api posts to, and how a streamed line is read.
PATHS = {"completions": "/v1/completions", "chat": "/v1/chat/completions", "ollama-chat": "/api/chat"}


def has_text(api, data):
    """Whether a streamed line carries text (checked without parsing JSON,
    so the client costs every server the same little CPU)."""
    if api == "completions":
        return b'"text":""' not in data
    return b'"content":"' in data and b'"content":""' not in data


def one_request(url, api, body, result, barrier):
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=600)
    payload = json.dumps(body).encode()
    headers = {"Content-Type": "application/json", "Accept": "text/event-stream"}
    barrier.wait()
    sent = time.perf_counter()
    first = None
    usage = None
    chunks = 0
    error = None
    try:
        conn.request("POST", PATHS[api], body=payload, headers=headers)
        resp = conn.getresponse()
        if resp.status != 200:
            error = f"HTTP {resp.status}: {resp.read()[:300]!r}"
        else:
            while True:
                line = resp.readline()
                if not line:
                    break
                if api == "ollama-chat":
                    # NDJSON: every line an object; the last has done and
                    # the counts.
                    data = line.strip()
                    if not data:
                        continue
                    chunks += 1
                    if first is None and has_text(api, data):
                        first = time.perf_counter()
                    if b'"done":true' in data or b'"error"' in data:
                        msg = json.loads(data)
                        if "error" in msg:
                            error = str(msg["error"])
                        else:
                            usage = {"prompt_tokens": msg["prompt_eval_count"],
                                     "completion_tokens": msg["eval_count"]}
                        break
                    continue
                if not line.startswith(b"data: "):
                    continue
                data = line[6:].strip()
                if data == b"[DONE]":
                    break
                chunks += 1
                # Parse only what is needed: the first chunk with text and
                # the one carrying usage.
                if first is None and has_text(api, data):
                    first = time.perf_counter()
                if b'"usage"' in data:
                    msg = json.loads(data)
                    if msg.get("usage"):
                        usage = msg["usage"]
                    if "error" in msg:
                        error = json.dumps(msg["error"])
    except OSError as e:
        error = f"{type(e).__name__}: {e}"
    done = time.perf_counter()
    conn.close()
    result.update(sent=sent, first=first, done=done, usage=usage, chunks=chunks, error=error)


def request_body(args, text):
    """The same request in the shape of --api: greedy, ignore_eos, exactly
    max_tokens."""
    if args.api == "ollama-chat":
        return {
            "model": args.model,
            "messages": [{"role": "user", "content": text}],
            "stream": True,
            "options": {"num_predict": args.max_tokens, "temperature": 0, "ignore_eos": True},
        }
    body = {
        "model": args.model,
        "max_tokens": args.max_tokens,
        "ignore_eos": True,
        "temperature": 0,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    if args.api == "chat":
        body["messages"] = [{"role": "user", "content": text}]
    else:
        body["prompt"] = text
    return body


def round_(url, args, tag):
    results = [dict() for _ in range(args.concurrency)]
    barrier = threading.Barrier(args.concurrency)
    threads = []
    for i in range(args.concurrency):
        body = request_body(args, f"{args.salt}{tag}-{i}: {PROMPT}")
        t = threading.Thread(target=one_request, args=(url, args.api, body, results[i], barrier))
        t.start()
        threads.append(t)
    for t in threads:
        t.join()
    for r in results:
        if r["error"]:
            raise RuntimeError(f"request failed: {r['error']}")
        if not r["usage"]:
            raise RuntimeError("a stream ended without usage")
        if r["first"] is None:
            raise RuntimeError("a stream sent no text")
    tokens = [r["usage"]["completion_tokens"] for r in results]
    if any(t != args.max_tokens for t in tokens):
        raise RuntimeError(f"completion tokens {tokens}, expected {args.max_tokens} each")
    start = min(r["sent"] for r in results)
    end = max(r["done"] for r in results)
    total = sum(tokens)
    return {
        "agg_tps": total / (end - start),
        "wall_s": end - start,
        "ttft_ms": [(r["first"] - r["sent"]) * 1e3 for r in results],
        "completion_tokens": tokens,
    }


def summary(values):
    return {
        "avg": statistics.fmean(values),
        "stddev": statistics.stdev(values) if len(values) > 1 else 0.0,
        "samples": values,
    }


def run(args):
    url = urllib.parse.urlsplit(args.url)
    for w in range(args.warmup):
        round_(url, args, f"warmup{w}")
    rounds = [round_(url, args, f"r{n}") for n in range(args.rounds)]
    ttfts = [t for r in rounds for t in r["ttft_ms"]]
    report = {
        "label": args.label,
        "api": args.api,
        "round": args.round,
        "url": args.url,
        "model": args.model,
        "concurrency": args.concurrency,
        "max_tokens": args.max_tokens,
        "rounds": args.rounds,
        "agg_tps": summary([r["agg_tps"] for r in rounds]),
        "ttft_ms_p50": statistics.median(ttfts),
        "ttft_ms": ttfts,
    }
    text = json.dumps(report, indent=2)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text + "\n")
    print(text)
    return 0


def spread(values):
    return {
        "median": statistics.median(values),
        "min": min(values),
        "max": max(values),
        "samples": values,
    }


def ratio(a, b):
    return a / b if b else float("nan")


# (name in the table, key in the JSON, a round's figure from its report)
SERVE_METRICS = (
    ("generated t/s (all streams, wall)", "agg_tps", lambda r: r["agg_tps"]["avg"]),
    ("TTFT p50 ms (lower is better)", "ttft_ms_p50", lambda r: r["ttft_ms_p50"]),
)


def compare(args):
    # (label, streams) -> {bench round: report}
    by = {}
    for path in args.files:
        with open(path) as f:
            report = json.load(f)
        rounds = by.setdefault((report["label"], report["concurrency"]), {})
        n = report.get("round") or len(rounds) + 1
        if n in rounds:
            raise RuntimeError(f"{path}: a second report of {report['label']}, "
                               f"{report['concurrency']} streams, round {n}")
        rounds[n] = report
    levels = sorted({k for _, k in by})
    lines = [
        "| streams | metric | llama-server | troupe serve | ratio of medians "
        "| per-round ratio: median | min–max | target | result |",
        "|---:|---|---:|---:|---:|---:|---|---:|---|",
    ]
    rows = []
    detail = []
    for k in levels:
        theirs, ours = by.get((args.peer, k)), by.get((args.ours, k))
        if not theirs or not ours:
            continue
        both = sorted(set(theirs) & set(ours))
        for name, key, figure in SERVE_METRICS:
            a = spread([figure(theirs[n]) for n in sorted(theirs)])
            b = spread([figure(ours[n]) for n in sorted(ours)])
            of_medians = ratio(b["median"], a["median"])
            per_round = spread([ratio(figure(ours[n]), figure(theirs[n])) for n in both]) if both else None
            judged = per_round["median"] if per_round else of_medians
            target = args.target if key == "agg_tps" else None
            result = "" if target is None else ("pass" if judged >= target else "FAIL")
            rows.append({"streams": k, "metric": key, "peer": a, "troupe": b,
                         "ratio_of_medians": of_medians, "rounds": both, "round_ratio": per_round,
                         "target": target, "result": result})
            round_cells = (
                f"{per_round['median']:.3f} | {per_round['min']:.3f}–{per_round['max']:.3f}"
                if per_round else " | "
            )
            fmt = ".2f" if key == "agg_tps" else ".1f"
            lines.append(
                f"| {k} | {name} | {a['median']:{fmt}} | {b['median']:{fmt}} | {of_medians:.3f} | "
                f"{round_cells} | {'' if target is None else f'{target:.2f}'} | {result} |"
            )
        for n in both:
            a, b = theirs[n]["agg_tps"]["avg"], ours[n]["agg_tps"]["avg"]
            detail.append(f"| {k} | {n} | {a:.2f} | {b:.2f} | {ratio(b, a):.3f} |")
    if detail:
        # The rounds one by one show a drift (all ratios moving together)
        # or an odd round out.
        lines += [
            "",
            "Generated t/s per round (odd rounds started llama-server first, even rounds troupe):",
            "",
            "| streams | round | llama-server | troupe serve | ratio |",
            "|---:|---:|---:|---:|---:|",
            *detail,
        ]
    scaling = {}
    if len(levels) > 1:
        low, high = levels[0], levels[-1]
        lines.append("")
        for label in (args.peer, args.ours):
            lo, hi = by.get((label, low)), by.get((label, high))
            if lo and hi:
                x = ratio(statistics.median(r["agg_tps"]["avg"] for r in hi.values()),
                          statistics.median(r["agg_tps"]["avg"] for r in lo.values()))
                scaling[label] = x
                lines.append(f"{label}: median t/s at {high} streams / {low} stream = {x:.2f}×")
    print("\n".join(lines))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"rows": rows, "stream_scaling": scaling}, f, indent=2)
    return 0


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    w = sub.add_parser("wait")
    w.add_argument("url")
    w.add_argument("--timeout", type=float, default=60)
    w.add_argument("--since", type=float)
    la = sub.add_parser("launch")
    la.add_argument("url")
    la.add_argument("--log", required=True)
    la.add_argument("--timeout", type=float, default=120)
    la.add_argument("cmd_line", nargs=argparse.REMAINDER)
    r = sub.add_parser("run")
    r.add_argument("--url", required=True)
    r.add_argument("--model", required=True)
    r.add_argument("--label", required=True)
    r.add_argument("--concurrency", "-k", type=int, default=4)
    r.add_argument("--rounds", "-r", type=int, default=3)
    r.add_argument("--warmup", type=int, default=1)
    r.add_argument("--max-tokens", type=int, default=128)
    r.add_argument("--api", choices=sorted(PATHS), default="completions")
    r.add_argument("--salt", default="",
                   help="put in front of every prompt's tag, so that no run of the same server "
                        "start meets another's prompts in a prompt cache")
    r.add_argument("--out")
    r.add_argument("--round", type=int, help="the bench round this run belongs to (for compare)")
    c = sub.add_parser("compare")
    c.add_argument("files", nargs="+")
    c.add_argument("--peer", default="llama-server")
    c.add_argument("--ours", default="troupe")
    c.add_argument("--target", type=float, default=0.95)
    c.add_argument("--json", help="also write the comparison as JSON to this file")
    args = p.parse_args()
    try:
        return {"wait": wait, "launch": launch, "run": run, "compare": compare}[args.cmd](args)
    except RuntimeError as e:
        print(f"http_load: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
