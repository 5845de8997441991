#!/usr/bin/env python3
"""A fixed suite of small agent jobs, each run by `troupe run` on a real
model over several seeds; reports the success rate, steps and tokens per job.

Success is judged from the workspace (and, for jobs that ask for a report,
the task's answer), never from what the model says it did.

    python3 benches/agent_jobs.py --troupe target/release/troupe \\
        --models "$(bash scripts/fetch-models.sh)" --seeds 1,2,3

Every run gets a fresh data directory and this configuration:
[agents] model = MODEL, seed = SEED (temperature at its default 0.2),
[approval] execute = "allow" (the jobs run shell commands), and
[inference] threads = --threads. Writes a Markdown table and the raw runs
as JSON under --out (default benches/results/).
"""
import argparse
import datetime
import json
import os
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))


def read(ws, name):
    try:
        with open(os.path.join(ws, name), encoding="utf-8", errors="replace") as f:
            return f.read()
    except OSError:
        return None


def readme_lines(ws):
    text = read(ws, "README.md") or ""
    return str(text.count("\n"))


def python_prints(ws, script, word):
    path = os.path.join(ws, script)
    if not os.path.isfile(path):
        return False
    out = subprocess.run([sys.executable, path], cwd=ws, capture_output=True, text=True, timeout=30)
    return out.returncode == 0 and word in out.stdout.lower()


def json_equals(ws, name, expected):
    try:
        return json.loads(read(ws, name) or "") == expected
    except ValueError:
        return False


# (name, job, check(workspace, answer) -> bool)
JOBS = [
    ("write-hello", "Write a file hello.txt containing the word hello",
     lambda ws, a: "hello" in (read(ws, "hello.txt") or "").lower()),
    ("write-text", "Create a file notes.txt with the text: buy milk",
     lambda ws, a: "buy milk" in (read(ws, "notes.txt") or "").lower()),
    ("append-line", "Append the line 'done' to todo.txt",
     lambda ws, a: "done" in (read(ws, "todo.txt") or "").split()),
    ("rename", "Rename README.md to NOTES.md",
     lambda ws, a: read(ws, "NOTES.md") is not None and read(ws, "README.md") is None),
    ("mkdir", "Make a directory called build",
     lambda ws, a: os.path.isdir(os.path.join(ws, "build"))),
    ("run-echo", "Run `echo 42` and report its output",
     lambda ws, a: "42" in a),
    ("delete", "Delete the file README.md",
     lambda ws, a: read(ws, "README.md") is None),
    ("copy", "Copy README.md to backup.md",
     lambda ws, a: read(ws, "backup.md") is not None and read(ws, "backup.md") == read(ws, "README.md")),
    ("python-script", "Write a Python script hello.py that prints hello",
     lambda ws, a: python_prints(ws, "hello.py", "hello")),
    ("count-lines", "Count the lines of README.md",
     lambda ws, a: readme_lines(ws) in a),
    ("write-json", 'Write a file config.json containing {"debug": true}',
     lambda ws, a: json_equals(ws, "config.json", {"debug": True})),
    ("run-ls", "Run `ls` and report the output",
     lambda ws, a: "README.md" in a),
]


def troupe(binary, config, *args, timeout=None):
    return subprocess.run([binary, "--config", config, *args], capture_output=True,
                          text=True, timeout=timeout)


def tally(events):
    """Tokens as troupe's TokenTally counts them; tool steps; model calls."""
    running, settled, steps, calls = {}, 0, 0, 0
    for entry in events:
        e = entry["event"]
        kind = e["type"]
        if kind == "step_started":
            key = (e["subtask"], e["attempt"])
            running[key] = running.get(key, 0) + e["tokens"]
            steps += 1
            calls += 1
        elif kind == "subtask_finished":
            settled += max(running.pop((e["subtask"], e["attempt"]), 0), e["tokens"])
            calls += 1 if e["success"] else 0
        elif kind == "director_call":
            settled += e["tokens"]
            calls += 1
    return settled + sum(running.values()), steps, calls


def run_one(args, name, job, check, seed):
    with tempfile.TemporaryDirectory(prefix=f"troupe-{name}-") as tmp:
        config = os.path.join(tmp, "troupe.toml")
        with open(config, "w") as f:
            f.write(f'data_dir = "{tmp}/data"\nlog = "warn"\n'
                    f'[models]\ndirs = ["{args.models}"]\n'
                    f'[inference]\nthreads = {args.threads}\n'
                    f'[agents]\nmodel = "{args.model}"\nseed = {seed}\n'
                    f'[approval]\nexecute = "allow"\n')
        started = time.time()
        try:
            done = troupe(args.troupe, config, "run", job, timeout=args.timeout)
            exit_code, timed_out = done.returncode, False
        except subprocess.TimeoutExpired:
            exit_code, timed_out = None, True
        seconds = time.time() - started
        listed = troupe(args.troupe, config, "tasks", "list")
        ids = [line.split()[0] for line in listed.stdout.splitlines() if line.startswith("t-")]
        if not ids:
            return {"job": name, "seed": seed, "success": False, "error": "no task",
                    "stderr": listed.stderr[-500:]}
        view = json.loads(troupe(args.troupe, config, "tasks", "show", ids[-1], "--json").stdout)
        answer = view.get("answer") or ""
        ws = os.path.join(tmp, "data", "workspaces", ids[-1])
        tokens, steps, calls = tally(view["events"])
        return {
            "job": name, "seed": seed, "state": view["state"], "exit_code": exit_code,
            "timed_out": timed_out, "success": bool(check(ws, answer)),
            "subtasks": len(view["subtasks"]), "steps": steps, "model_calls": calls,
            "tokens": tokens, "seconds": round(seconds, 1), "answer": answer[:200],
        }


def cpu_model():
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return "unknown"


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--troupe", required=True)
    p.add_argument("--models", required=True)
    p.add_argument("--model", default="SmolLM2-135M-Instruct.Q4_1")
    p.add_argument("--seeds", default="1,2,3")
    p.add_argument("--jobs", default="", help="comma-separated job names (default: all)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--timeout", type=int, default=600, help="seconds per run")
    p.add_argument("--out", default=os.path.join(HERE, "results"))
    args = p.parse_args()
    args.models = os.path.abspath(args.models)
    args.troupe = os.path.abspath(args.troupe)
    seeds = [int(s) for s in args.seeds.split(",")]
    wanted = set(filter(None, args.jobs.split(",")))
    jobs = [j for j in JOBS if not wanted or j[0] in wanted]
    runs = []
    for name, job, check in jobs:
        for seed in seeds:
            result = run_one(args, name, job, check, seed)
            runs.append(result)
            print(f"{name:14} seed {seed}: {'ok  ' if result['success'] else 'FAIL'} "
                  f"{result.get('state', '?'):9} steps {result.get('steps', '-')} "
                  f"tokens {result.get('tokens', '-')} {result.get('seconds', '-')} s",
                  file=sys.stderr, flush=True)
    date = datetime.date.today().isoformat()
    lines = [
        f"# Agent jobs on {args.model} ({date})", "",
        f"CPU: {cpu_model()}, {args.threads} threads. Seeds: {args.seeds}. "
        f"Command: `python3 benches/agent_jobs.py --troupe target/release/troupe "
        f"--models target/models --seeds {args.seeds}`", "",
        "| job | succeeded | steps (mean) | tokens (mean) | seconds (mean) |",
        "| --- | --- | --- | --- | --- |",
    ]
    for name, job, _ in jobs:
        mine = [r for r in runs if r["job"] == name]
        ok = sum(r["success"] for r in mine)
        mean = lambda k: sum(r.get(k, 0) or 0 for r in mine) / len(mine)
        lines.append(f"| {name}: {job.replace('|', '/')} | {ok}/{len(mine)} | "
                     f"{mean('steps'):.1f} | {mean('tokens'):.0f} | {mean('seconds'):.1f} |")
    total = sum(r["success"] for r in runs)
    lines += ["", f"**{total}/{len(runs)} runs succeeded ({100 * total / len(runs):.0f}%).**", ""]
    os.makedirs(args.out, exist_ok=True)
    stem = os.path.join(args.out, f"agent-jobs-{date}")
    with open(stem + ".md", "w") as f:
        f.write("\n".join(lines))
    with open(stem + ".json", "w") as f:
        json.dump({"model": args.model, "cpu": cpu_model(), "runs": runs}, f, indent=1)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
