#!/usr/bin/env python3
"""Writes the real-model goldens from llama.cpp's own server.

For each real model (scripts/fetch-models.sh), it starts `llama-server
--jinja` built by benches/build-llama-peers.sh from the same vendored
llama.cpp troupe links (with the same fixes), and records:

  templates    /apply-template for every conversation in conversations.json:
               the prompt text llama.cpp renders with the model's template
  chat         /v1/chat/completions, greedy (temperature 0), for the same
               conversations: the answer, its finish reason and `usage`
  completions  /completion of raw text prompts, greedy: the generated token
               ids, their text, and the smallest gap between the chosen and
               the runner-up token's probability (a golden whose gap is tiny
               could flip on another CPU's kernels; such prompts are left out)

into llama-server.json next to this script. inference/tests/it/real_models.rs
checks troupe's in-process engine against it.

    bash benches/build-llama-peers.sh llama-server
    python3 inference/tests/goldens/make-goldens.py \\
        --server target/llama-peers/bin/llama-server --models "$(bash scripts/fetch-models.sh)"
"""
import argparse
import json
import os
import platform
import socket
import subprocess
import sys
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
MODELS = ["SmolLM2-135M-Instruct.Q4_1.gguf", "gemma-3-270m-q4_k_m.gguf"]
RAW_PROMPTS = [
    "The capital of France is",
    "def fibonacci(n):\n",
    "Once upon a time, in a small village,",
    "1, 2, 3, 4, 5,",
    "Monday, Tuesday, Wednesday,",
    "Q: What is 7 times 8?\nA:",
    "import numpy as np\nimport",
    "<html>\n<head>\n",
    "The first three planets from the Sun are",
    "January, February, March,",
]
CHAT_MAX_TOKENS = 24
COMPLETION_TOKENS = 24
# Smallest accepted gap, in log-probability, between the greedy token and
# the runner-up at every step: kernels of other CPUs (AVX2, AVX-512, AMX)
# round differently, by far less than this.
MIN_GAP = 0.1


def post(port, path, body):
    req = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=300) as resp:
        return json.load(resp)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_model():
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor()


def serve(server, model, threads):
    port = free_port()
    proc = subprocess.Popen(
        [server, "--jinja", "-m", model, "--host", "127.0.0.1", "--port", str(port),
         "-t", str(threads), "-c", "4096", "-np", "1", "--seed", "0"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while time.time() < deadline:
        if proc.poll() is not None:
            sys.exit(f"llama-server exited: {proc.stderr.read()[-2000:]}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as r:
                if r.status == 200:
                    return proc, port
        except OSError:
            time.sleep(0.3)
    proc.kill()
    sys.exit("llama-server did not become healthy in 120 s")


def min_gap(steps):
    gaps = []
    for step in steps:
        top = step.get("top_logprobs") or []
        if len(top) >= 2:
            gaps.append(top[0]["logprob"] - top[1]["logprob"])
    return min(gaps) if gaps else float("inf")


def goldens_for(port, conversations):
    out = {"templates": {}, "chat": {}, "completions": {}}
    for name, messages in conversations.items():
        out["templates"][name] = post(port, "/apply-template", {"messages": messages})["prompt"]
        answer = post(port, "/v1/chat/completions", {
            "messages": messages, "max_tokens": CHAT_MAX_TOKENS, "temperature": 0,
            "logprobs": True, "top_logprobs": 2,
        })
        choice = answer["choices"][0]
        gap = min_gap((choice.get("logprobs") or {}).get("content") or [])
        if gap < MIN_GAP:
            print(f"  chat {name}: left out, greedy gap {gap:.4f} < {MIN_GAP}", file=sys.stderr)
            continue
        out["chat"][name] = {
            "content": choice["message"]["content"],
            "finish_reason": choice["finish_reason"],
            "prompt_tokens": answer["usage"]["prompt_tokens"],
            "completion_tokens": answer["usage"]["completion_tokens"],
            "min_logprob_gap": round(gap, 4),
        }
    for prompt in RAW_PROMPTS:
        done = post(port, "/completion", {
            "prompt": prompt, "n_predict": COMPLETION_TOKENS, "temperature": 0,
            "return_tokens": True, "n_probs": 2, "cache_prompt": False,
        })
        gap = min_gap(done.get("completion_probabilities", []))
        if gap < MIN_GAP:
            print(f"  completion {prompt!r}: left out, greedy gap {gap:.4f} < {MIN_GAP}",
                  file=sys.stderr)
            continue
        out["completions"][prompt] = {
            "tokens": done["tokens"],
            "content": done["content"],
            "prompt_tokens": done["tokens_evaluated"],
            "min_logprob_gap": round(gap, 4),
        }
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--server", required=True)
    parser.add_argument("--models", required=True, help="directory of scripts/fetch-models.sh")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default=os.path.join(HERE, "llama-server.json"))
    args = parser.parse_args()
    with open(os.path.join(HERE, "conversations.json")) as f:
        conversations = json.load(f)
    result = {
        "made_by": "bash benches/build-llama-peers.sh llama-server && python3 "
                   "inference/tests/goldens/make-goldens.py --server "
                   "target/llama-peers/bin/llama-server --models target/models",
        "llama_server": subprocess.run([args.server, "--version"], capture_output=True,
                                       text=True).stderr.strip().splitlines()[-1:],
        "cpu": cpu_model(),
        "chat_max_tokens": CHAT_MAX_TOKENS,
        "completion_tokens": COMPLETION_TOKENS,
        "models": {},
    }
    for model in MODELS:
        print(f"{model}:", file=sys.stderr)
        proc, port = serve(args.server, os.path.join(args.models, model), args.threads)
        try:
            result["models"][model] = goldens_for(port, conversations)
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    with open(args.out, "w") as f:
        json.dump(result, f, indent=2, ensure_ascii=False)
        f.write("\n")
    print(f"wrote {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
