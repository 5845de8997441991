"""Drives a running `troupe serve` with the official `ollama` Python client.

Run by tests/it/serve.rs (scripts/test.sh installs the client:
`python3 -m pip install ollama`). Reads TROUPE_HOST (http://127.0.0.1:PORT),
TROUPE_API_KEY and TROUPE_MODEL (a real chat model); exits non-zero with a
message on the first check that fails.
"""

import json
import math
import os
import sys
import urllib.error
import urllib.request

import ollama


def check(condition, message):
    if not condition:
        print(f"FAILED: {message}", file=sys.stderr)
        sys.exit(1)


def call(method, path, body=None):
    """One JSON request to the server with the key; its JSON answer."""
    request = urllib.request.Request(
        os.environ["TROUPE_HOST"] + path,
        method=method,
        data=None if body is None else json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {os.environ['TROUPE_API_KEY']}",
                 "Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=120) as response:
        return json.load(response)


def main():
    model = os.environ["TROUPE_MODEL"]
    client = ollama.Client(
        host=os.environ["TROUPE_HOST"],
        headers={"Authorization": f"Bearer {os.environ['TROUPE_API_KEY']}"},
        timeout=120,
    )
    greedy = {"num_predict": 12, "temperature": 0, "seed": 3}
    messages = [{"role": "user", "content": "Name three colours."}]

    names = [m.model for m in client.list().models]
    check(model in names, f"{model} not in /api/tags: {names}")

    weather = {"type": "function", "function": {
        "name": "get_weather", "description": "The weather in a city now",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                       "required": ["city"]}}}
    asked = [{"role": "user", "content": "What is the weather in Paris? Call get_weather."}]
    called = client.chat(model=model, messages=asked, tools=[weather],
                         options={"temperature": 0, "num_predict": 60})
    calls = called.message.tool_calls or []
    check(len(calls) == 1 and calls[0].function.name == "get_weather",
          f"no get_weather call: {called.message}")
    check(isinstance(calls[0].function.arguments.get("city"), str),
          f"arguments {calls[0].function.arguments}")
    streamed_call = [p for p in client.chat(model=model, messages=asked, tools=[weather], stream=True,
                                            options={"temperature": 0, "num_predict": 60})
                     if p.message.tool_calls]
    check(len(streamed_call) == 1 and streamed_call[0].message.tool_calls[0].function.name
          == "get_weather", f"streamed call: {streamed_call}")
    followed = client.chat(model=model, tools=[weather], options={"temperature": 0, "num_predict": 40},
                           messages=asked + [called.message,
                                             {"role": "tool", "content": "Sunny, 21 C",
                                              "tool_name": "get_weather"}])
    check(followed.done, f"after the tool's answer: {followed}")

    shown = client.show(model)
    arch = shown.modelinfo["general.architecture"]
    check(arch == "llama", f"architecture {arch}")
    check(shown.modelinfo[f"{arch}.context_length"] >= 2048,
          f"context length {shown.modelinfo.get(arch + '.context_length')}")
    check(shown.modelinfo["tokenizer.ggml.tokens"] is None, "the vocabulary was not left out")
    check("<|im_start|>" in shown.template, f"template {shown.template[:80]!r}")
    check("completion" in shown.capabilities, f"capabilities {shown.capabilities}")
    check(shown.parameters == "num_ctx".ljust(30) + " 1024", f"parameters {shown.parameters!r}")
    check(shown.details.format == "gguf" and shown.details.quantization_level,
          f"details {shown.details}")
    try:
        client.show("no-such-model")
        check(False, "show of an unknown model succeeded")
    except ollama.ResponseError as error:
        check(error.status_code == 404, f"show unknown: {error.status_code}")

    whole = client.chat(model=model, messages=messages, options=greedy, stream=False)
    check(whole.done is True, f"done {whole.done}")
    check(whole.message.role == "assistant", f"role {whole.message.role}")
    check(whole.message.content, "an empty answer")
    check(0 < whole.eval_count <= 12, f"eval_count {whole.eval_count}")
    check(whole.prompt_eval_count > 5, f"prompt_eval_count {whole.prompt_eval_count}")
    check(whole.total_duration > 0 and whole.eval_duration > 0, "durations missing")
    check(whole.total_duration >= whole.eval_duration, "total shorter than eval")
    check(whole.done_reason in ("stop", "length"), f"done_reason {whole.done_reason}")

    # num_ctx is the request's window: 3 tokens past the prompt leave room
    # for 3; a prompt longer than it is served, not refused (clients send a
    # small num_ctx with long chats).
    windowed = client.chat(model=model, messages=messages, stream=False,
                           options={"temperature": 0, "num_ctx": whole.prompt_eval_count + 3})
    check(windowed.eval_count == 3 and windowed.done_reason == "length",
          f"num_ctx prompt+3: eval_count {windowed.eval_count}, {windowed.done_reason}")
    small = client.chat(model=model, messages=messages, stream=False,
                        options={"temperature": 0, "num_ctx": 8, "num_predict": 4})
    check(small.done and small.eval_count == 4, f"num_ctx 8 with a longer prompt: {small}")

    pieces = list(client.chat(model=model, messages=messages, options=greedy, stream=True))
    check(len(pieces) >= 2, f"{len(pieces)} streamed objects")
    check(all(not p.done for p in pieces[:-1]), "done before the end")
    check(pieces[-1].done is True, "the last object is not done")
    streamed = "".join(p.message.content or "" for p in pieces)
    check(streamed == whole.message.content,
          f"stream {streamed!r} differs from whole {whole.message.content!r}")
    check(pieces[-1].eval_count == whole.eval_count, "eval_count differs")

    gen = client.generate(model=model, prompt="The sky is", options=greedy, stream=False)
    check(gen.done is True and gen.response, f"generate: {gen}")
    gen_pieces = list(client.generate(model=model, prompt="The sky is", options=greedy,
                                      stream=True))
    check("".join(p.response for p in gen_pieces) == gen.response, "generate stream differs")

    as_json = client.chat(model=model, messages=[{"role": "user", "content": "Give me a JSON object."}],
                          format="json", options={"num_predict": 40, "temperature": 0})
    try:
        json.loads(as_json.message.content)
    except ValueError:
        # num_predict can cut an object short; a cut-off one still opens with {.
        check(as_json.done_reason == "length" and as_json.message.content.lstrip().startswith("{"),
              f"format json gave {as_json.message.content!r}")

    schema = {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}
    as_schema = client.chat(model=model, messages=[{"role": "user", "content": "A number?"}],
                            format=schema, options={"num_predict": 30, "temperature": 0})
    value = json.loads(as_schema.message.content)
    check(isinstance(value.get("n"), int), f"format schema gave {value!r}")

    vectors = client.embed(model=model, input=["red", "a red colour"]).embeddings
    check(len(vectors) == 2, f"{len(vectors)} embeddings for 2 inputs")
    norm = sum(x * x for x in vectors[0]) ** 0.5
    check(abs(norm - 1.0) < 1e-3, f"an embedding of norm {norm}")
    single = client.embeddings(model=model, prompt="red").embedding
    check(len(single) == len(vectors[0]), "/api/embeddings and /api/embed differ in size")
    check(max(abs(a - b) for a, b in zip(single, vectors[0])) < 1e-4,
          "/api/embeddings and /api/embed disagree on the same text")

    version = call("GET", "/api/version")["version"]
    check(version.count(".") == 2, f"/api/version {version!r}")

    loaded = [m.model for m in client.ps().models]
    check(model in loaded, f"{model} not in /api/ps: {loaded}")

    # The OpenAI routes as llama-server has them: without /v1, and with no
    # model named while exactly one is loaded.
    listed = call("GET", "/models")
    check(model in [m["id"] for m in listed["data"]], f"/models: {listed}")
    answered = call("POST", "/chat/completions",
                    {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 4})
    check(answered["model"] == model, f"/chat/completions without a model: {answered}")
    completed = call("POST", "/completions", {"prompt": "The sky", "max_tokens": 4})
    check(completed["model"] == model, f"/completions without a model: {completed}")
    logprobs(model)

    client.generate(model=model, prompt="", keep_alive=0)
    loaded = [m.model for m in client.ps().models]
    check(model not in loaded, f"keep_alive 0 left {model} loaded: {loaded}")
    client.chat(model=model, messages=[], keep_alive="5m")
    check(model in [m.model for m in client.ps().models], "an empty chat did not load the model")
    client.chat(model=model, messages=[], keep_alive=0)
    check(model not in [m.model for m in client.ps().models], "an empty chat with keep_alive 0 did not unload")
    client.generate(model=model, prompt="", keep_alive="10m")
    loaded = [m.model for m in client.ps().models]
    check(model in loaded, f"an empty generate did not load {model}: {loaded}")

    try:
        client.chat(model="no-such-model", messages=messages)
        check(False, "an unknown model was accepted")
    except ollama.ResponseError as error:
        check(error.status_code == 404, f"unknown model: {error.status_code} {error.error}")
    try:
        client.chat(model=model, messages=[{"role": "user", "content": "hi", "images": [b"\x89PNG"]}])
        check(False, "images were accepted")
    except ollama.ResponseError as error:
        check(error.status_code == 400 and "images" in error.error,
              f"images: {error.status_code} {error.error}")

    try:
        call("POST", "/api/chat", {"model": model, "messages": "not a list"})
        check(False, "a malformed body was accepted")
    except urllib.error.HTTPError as error:
        body = json.load(error)
        check(error.code == 400 and isinstance(body.get("error"), str),
              f"a malformed body: {error.code} {body}")

    store(client, model)
    refusals(model)
    print(f"ok: {whole.message.content!r}; {len(pieces)} streamed objects")


def logprobs(model):
    """OpenAI's logprobs on the real model, through the official openai
    client: greedy picks the likeliest token, the tokens spell the answer,
    a stream carries the same figures."""
    import openai
    client = openai.OpenAI(base_url=os.environ["TROUPE_HOST"] + "/v1",
                           api_key=os.environ["TROUPE_API_KEY"], max_retries=0, timeout=120)
    asked = dict(model=model, messages=[{"role": "user", "content": "Name a colour."}],
                 max_tokens=8, temperature=0, logprobs=True, top_logprobs=3)
    whole = client.chat.completions.create(**asked)
    content = whole.choices[0].logprobs.content
    text = whole.choices[0].message.content
    check("".join(t.token for t in content) == text,
          f"logprob tokens {[t.token for t in content]} do not spell {text!r}")
    for t in content:
        top = t.top_logprobs
        check(len(top) == 3 and t.logprob <= 0, f"logprobs {t}")
        check(top[0].token == t.token and abs(top[0].logprob - t.logprob) < 1e-5,
              f"greedy did not take the likeliest token: {t}")
        check(top[0].logprob >= top[1].logprob >= top[2].logprob, f"top order {top}")
        check(sum(math.exp(a.logprob) for a in top) <= 1.0001, f"probabilities over 1: {top}")
    streamed = list(client.chat.completions.create(**asked, stream=True))
    pieces = [t for c in streamed if c.choices and c.choices[0].logprobs
              for t in c.choices[0].logprobs.content]
    check([(t.token, round(t.logprob, 4)) for t in pieces]
          == [(t.token, round(t.logprob, 4)) for t in content],
          "the stream's log probabilities differ")
    legacy = client.completions.create(model=model, prompt="The sky is", max_tokens=5,
                                       temperature=0, logprobs=2, extra_body={"ignore_eos": True})
    lp = legacy.choices[0].logprobs
    check("".join(lp.tokens) == legacy.choices[0].text and len(lp.token_logprobs) == 5,
          f"completion logprobs {lp}")
    check(lp.text_offset[0] == 0 and all(1 <= len(d) <= 2 for d in lp.top_logprobs),
          f"completion top_logprobs {lp.top_logprobs}")
    # A streamed call comes as OpenAI streams one: the name, then the
    # arguments piece by piece, the same call as the whole answer's.
    weather = {"type": "function", "function": {
        "name": "get_weather", "description": "The weather in a city now",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                       "required": ["city"]}}}
    ask = dict(model=model, tools=[weather], temperature=0, max_tokens=60,
               messages=[{"role": "user", "content": "What is the weather in Paris? Call get_weather."}])
    called = client.chat.completions.create(**ask).choices[0].message.tool_calls[0]
    chunks = list(client.chat.completions.create(**ask, stream=True))
    calls = [c.choices[0].delta.tool_calls[0] for c in chunks
             if c.choices and c.choices[0].delta.tool_calls]
    check(calls and calls[0].function.name == "get_weather" and calls[0].id,
          f"the stream's first call delta {calls[:1]}")
    check(len(calls) >= 3, f"the arguments came in {len(calls) - 1} piece(s), not streamed")
    streamed_args = "".join(c.function.arguments or "" for c in calls)
    check(json.loads(streamed_args) == json.loads(called.function.arguments),
          f"streamed arguments {streamed_args!r}, whole {called.function.arguments!r}")
    reasons = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    check(reasons == ["tool_calls"], f"streamed finish reasons {reasons}")

    try:
        client.chat.completions.create(**{**asked, "top_logprobs": 21})
        check(False, "top_logprobs 21 was accepted")
    except openai.BadRequestError as error:
        check("top_logprobs" in str(error), f"top_logprobs 21: {error}")


def refusals(model):
    """Requests refused before any route runs answer in Ollama's shape on
    Ollama's routes: no key (401), an unknown route (404), a cross-site
    page (403)."""
    host = os.environ["TROUPE_HOST"]
    cases = [
        ({}, "POST", "/api/chat", 401),
        ({"Authorization": f"Bearer {os.environ['TROUPE_API_KEY']}"}, "POST", "/api/create", 404),
        ({"Authorization": f"Bearer {os.environ['TROUPE_API_KEY']}", "Origin": "https://evil.example",
          "Sec-Fetch-Site": "cross-site"}, "POST", "/api/generate", 403),
    ]
    for headers, method, path, status in cases:
        request = urllib.request.Request(host + path, method=method,
                                         data=json.dumps({"model": model}).encode(),
                                         headers={"Content-Type": "application/json", **headers})
        try:
            urllib.request.urlopen(request, timeout=30)
            check(False, f"{method} {path} with {headers} was accepted")
        except urllib.error.HTTPError as error:
            body = json.load(error)
            check(error.code == status and isinstance(body.get("error"), str),
                  f"{method} {path}: {error.code} {body}")
    # The OpenAI routes keep OpenAI's shape.
    try:
        urllib.request.urlopen(urllib.request.Request(host + "/v1/models"), timeout=30)
        check(False, "/v1/models without the key was accepted")
    except urllib.error.HTTPError as error:
        body = json.load(error)
        check(error.code == 401 and isinstance(body.get("error"), dict), f"/v1/models: {body}")


def store(client, model):
    """pull (from the test's stand-in hub, TROUPE_PULL names a repository
    there holding a Q8_0 and an F32 file), copy and delete."""
    pulled = os.environ["TROUPE_PULL"]
    progress = list(client.pull(f"hf.co/{pulled}:q8_0", stream=True))
    statuses = [p.status for p in progress]
    check(statuses[0] == "pulling manifest" and statuses[-1] == "success",
          f"pull statuses {statuses}")
    files = [p for p in progress if p.digest]
    check(files and files[-1].completed == files[-1].total > 0,
          f"pull progress {[(p.digest, p.completed, p.total) for p in files]}")
    check(all("Q8_0" in p.digest for p in files), f"the quant tag chose {files[-1].digest}")
    names = [m.model for m in client.list().models]
    check(pulled in names, f"{pulled} not listed after the pull: {names}")
    # The name it was pulled by names it, as `ollama pull X; ollama run X`.
    pull_name = f"hf.co/{pulled}:Q8_0"
    shown = client.show(pull_name)
    check(shown.details.quantization_level == "Q8_0", f"pulled {shown.details}")
    said = client.generate(model=pull_name, prompt="Hi", options={"num_predict": 2})
    check(said.done, f"the pulled model did not answer: {said}")

    client.copy(model, "smollm2-copy")
    check("smollm2-copy" in [m.model for m in client.list().models], "the copy is not listed")
    said = client.generate(model="smollm2-copy:latest", prompt="Hello",
                           options={"num_predict": 2, "temperature": 0})
    check(said.done, f"the copy did not answer: {said}")
    client.delete("smollm2-copy")
    names = [m.model for m in client.list().models]
    check("smollm2-copy" not in names and model in names,
          f"deleting the copy: {names}")
    client.delete(pull_name)
    check(pulled not in [m.model for m in client.list().models], "the pulled model stayed")

    for bad, status in [(lambda: client.delete("no-such-model"), 404),
                        (lambda: client.pull("llama3.2", stream=False), 400),
                        (lambda: client.pull(f"hf.co/{pulled}:Q2_K", stream=False), 400),
                        (lambda: client.pull("hf.co/nobody/nothing", stream=False), 404),
                        (lambda: client.copy(model, "../escape"), 400),
                        (lambda: client.copy(model, model), 400)]:
        try:
            bad()
            check(False, f"expected a {status}")
        except ollama.ResponseError as error:
            check(error.status_code == status, f"expected {status}: {error.status_code} {error.error}")
    try:
        list(client.pull("hf.co/nobody/nothing", stream=True))
        check(False, "a streamed pull of a missing repository succeeded")
    except ollama.ResponseError as error:
        check("not found" in error.error.lower(), f"streamed pull error {error.error}")


if __name__ == "__main__":
    main()
