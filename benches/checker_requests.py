#!/usr/bin/env python3
"""How often a model ends its turn on the checkers' own requests.

Sends one of the requests llm-comply and compatcanary send (no temperature,
seed or max_tokens: the server's defaults decide) N times, one at a time, to
an OpenAI-compatible server (`troupe serve` or llama-server), and prints how
each ended and how many tokens each took; answers that ran to the end of the
context (or, for the forced call, that hold no call) are printed in full.
This is how the checkers test's flakiness was traced to SmolLM2-135M's
sampling (see tests/it/checkers.rs).

Usage: benches/checker_requests.py BASE_URL N REQUEST [EXTRA_JSON] [MODEL]
  REQUEST: system-prompt | basic | multi-turn | forced-call
  EXTRA_JSON: fields added to the request, e.g. '{"temperature": 0}'
Example: benches/checker_requests.py http://127.0.0.1:8080 40 forced-call
"""
import collections
import json
import sys
import time
import urllib.request

REQUESTS = {
    # llm-comply's chat-system-prompt, chat-basic-response, chat-multi-turn
    "system-prompt": {"messages": [
        {"role": "system", "content": "Always respond in exactly one word."},
        {"role": "user", "content": "Say hello."}]},
    "basic": {"messages": [{"role": "user", "content": "Say hello in exactly 3 words."}]},
    "multi-turn": {"messages": [
        {"role": "user", "content": "My name is Alice."},
        {"role": "assistant", "content": "Hello Alice!"},
        {"role": "user", "content": "What is my name? Reply with just the name."}]},
    # compatcanary's "Forced tool call"
    "forced-call": {
        "messages": [{"role": "user", "content": "Call the provided tool with value CANARY_OK."}],
        "tools": [{"type": "function", "function": {
            "name": "compatcanary_echo",
            "description": "Echo a compatibility probe value.",
            "strict": True,
            "parameters": {"type": "object", "properties": {"value": {"type": "string"}},
                           "required": ["value"], "additionalProperties": False}}}],
        "tool_choice": {"type": "function", "function": {"name": "compatcanary_echo"}}},
}


def main():
    if len(sys.argv) < 4 or sys.argv[3] not in REQUESTS:
        sys.exit(__doc__)
    base, n, which = sys.argv[1].rstrip("/"), int(sys.argv[2]), sys.argv[3]
    extra = json.loads(sys.argv[4]) if len(sys.argv) > 4 else {}
    model = sys.argv[5] if len(sys.argv) > 5 else "smollm2"
    ends, tokens = collections.Counter(), []
    for i in range(n):
        body = {**REQUESTS[which], "model": model, **extra}
        request = urllib.request.Request(
            base + "/v1/chat/completions", json.dumps(body).encode(),
            {"content-type": "application/json"})
        started = time.time()
        with urllib.request.urlopen(request, timeout=900) as response:
            answer = json.load(response)
        seconds = time.time() - started
        choice = answer["choices"][0]
        message, finish = choice["message"], choice["finish_reason"]
        ends[finish] += 1
        tokens.append(answer["usage"]["completion_tokens"])
        if finish == "length" or (which == "forced-call" and not message.get("tool_calls")):
            print(f"--- request {i}: {finish} after {tokens[-1]} tokens, {seconds:.1f} s")
            print(repr(message.get("content") or ""))
            print(json.dumps(message.get("tool_calls")), flush=True)
    label = f"{which} {json.dumps(extra)}" if extra else which
    print(f"{label}: {dict(ends)}; completion tokens {sorted(tokens)}")


if __name__ == "__main__":
    main()
