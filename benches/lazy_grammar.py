"""Free text under a lazy tool-call grammar, against the same prompt without
one (issue 17): a copy of MODEL (a GGUF) gets a template that shows tools
the Hermes way (testkit/templates/chatml-tools.jinja), `troupe serve` holds
it, and in alternating rounds the same greedy answer is asked for
- through /api/chat with a tool: the template renders the tool, the lazy
  grammar waits for `<tool_call>` (the model writes plain text here), and
- through /api/generate `raw` with the prompt that template renders for that
  request (jinja2, json.dumps as tojson: the same tokens),
reading troupe's own eval_count / eval_duration. The ratio is the per-token
cost of sampling under a grammar that is waiting for its trigger.

    python3 benches/lazy_grammar.py target/release/troupe target/models/SmolLM2-135M-Instruct.Q4_1.gguf [ROUNDS]
"""

import json
import os
import statistics
import struct
import subprocess
import sys
import tempfile
import time
import urllib.request

import jinja2

HERE = os.path.dirname(os.path.abspath(__file__))
TEMPLATE = os.path.join(HERE, "..", "testkit", "templates", "chatml-tools.jinja")
TOOL = {"type": "function", "function": {
    "name": "get_weather", "description": "The current weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}
MESSAGES = [{"role": "user", "content": "What is the weather in Paris?"}]
OPTIONS = {"temperature": 0, "num_predict": 96}


def retemplate(src, dst, template):
    """Copies a GGUF file with another tokenizer.chat_template (as the
    testkit's with_chat_template does)."""
    b = open(src, "rb").read()
    at = 0

    def take(n):
        nonlocal at
        at += n
        return b[at - n:at]

    u32 = lambda: struct.unpack("<I", take(4))[0]
    u64 = lambda: struct.unpack("<Q", take(8))[0]

    def skip(kind):
        nonlocal at
        sizes = {0: 1, 1: 1, 7: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 10: 8, 11: 8, 12: 8}
        if kind in sizes:
            at += sizes[kind]
        elif kind == 8:
            n = u64()
            at += n
        elif kind == 9:
            item, count = u32(), u64()
            for _ in range(count):
                skip(item)

    def kv(key, value):
        k, v = key.encode(), value.encode()
        return struct.pack("<Q", len(k)) + k + struct.pack("<IQ", 8, len(v)) + v

    assert take(4) == b"GGUF"
    version, n_tensors, n_kv = u32(), u64(), u64()
    kvs, align, found = b"", 32, False
    for _ in range(n_kv):
        start = at
        name = take(u64()).decode()
        kind = u32()
        value_at = at
        skip(kind)
        if name == "general.alignment":
            align = struct.unpack("<I", b[value_at:value_at + 4])[0]
        if name == "tokenizer.chat_template":
            kvs += kv(name, template)
            found = True
        else:
            kvs += b[start:at]
    if not found:
        kvs += kv("tokenizer.chat_template", template)
        n_kv += 1
    infos = at
    for _ in range(n_tensors):
        take(u64())
        n_dims = u32()
        at += 8 * n_dims + 12
    out = b"GGUF" + struct.pack("<IQQ", version, n_tensors, n_kv) + kvs + b[infos:at]
    out += b"\0" * ((-len(out)) % align)
    open(dst, "wb").write(out + b[-(-at // align) * align:])


def post(base, path, body):
    req = urllib.request.Request(base + path, json.dumps(body).encode(), {"Content-Type": "application/json"})
    return json.load(urllib.request.urlopen(req, timeout=300))


def main():
    troupe, model = sys.argv[1], sys.argv[2]
    rounds = int(sys.argv[3]) if len(sys.argv) > 3 else 12
    template = open(TEMPLATE).read()
    env = jinja2.Environment(trim_blocks=True, lstrip_blocks=True)
    env.filters["tojson"] = lambda v: json.dumps(v, ensure_ascii=False)
    prompt = env.from_string(template).render(messages=MESSAGES, tools=[TOOL], add_generation_prompt=True)
    with tempfile.TemporaryDirectory() as dir:
        os.makedirs(f"{dir}/models")
        retemplate(model, f"{dir}/models/tools.gguf", template)
        with open(f"{dir}/troupe.toml", "w") as f:
            f.write(f'data_dir = "{dir}/data"\n[models]\ndirs = ["{dir}/models"]\nhf_cache = "{dir}/hf"\n'
                    f'ollama = "{dir}/ollama"\n[inference]\nthreads = 2\ncontext_length = 2048\n'
                    f'parallel_slots = 1\n[serve]\nmemory_budget = "2GiB"\n[agents]\nmodel = "tools"\n')
        server = subprocess.Popen([troupe, "--config", f"{dir}/troupe.toml", "serve", "--addr", "127.0.0.1:0"],
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        try:
            line = ""
            while "troupe serve: " not in line:
                line = server.stdout.readline()
                if not line:
                    sys.exit("troupe serve exited")
            base = line.split("troupe serve: ")[1].split()[0]

            def lazy():
                r = post(base, "/api/chat", {"model": "tools", "stream": False, "options": OPTIONS,
                                             "messages": MESSAGES, "tools": [TOOL]})
                return r["eval_count"] / (r["eval_duration"] / 1e9), r["prompt_eval_count"], r["message"]
            def raw():
                r = post(base, "/api/generate", {"model": "tools", "stream": False, "options": OPTIONS,
                                                 "raw": True, "prompt": prompt})
                return r["eval_count"] / (r["eval_duration"] / 1e9), r["prompt_eval_count"], r["response"]
            (_, n_lazy, message), (_, n_raw, text) = lazy(), raw()
            if message.get("tool_calls") or n_lazy != n_raw:
                sys.exit(f"not comparable: calls {message.get('tool_calls')}, prompt tokens {n_lazy} / {n_raw}")
            with_grammar, without, texts = [], [], {}
            for i in range(rounds):
                pairs = [(lazy, with_grammar), (raw, without)]
                for ask, sink in pairs if i % 2 == 0 else reversed(pairs):
                    rate, _, answer = ask()
                    sink.append(rate)
                    texts[ask] = answer["content"] if isinstance(answer, dict) else answer
            same = texts[lazy] == texts[raw]
            a, b = statistics.median(with_grammar), statistics.median(without)
            print(f"prompt {n_raw} tokens, the same text in the last round: {same}; {rounds} rounds each, medians: "
                  f"raw prompt {b:.1f} tok/s, tools with the lazy grammar waiting {a:.1f} tok/s, ratio {a / b:.3f}")
        finally:
            server.terminate()
            server.wait()


if __name__ == "__main__":
    main()
