"""Drives a running `troupe serve` with the official `openai` Python client.

Run by tests/it/serve.rs when `import openai` works (install it with
`python3 -m pip install openai`). Reads TROUPE_BASE_URL (ending in /v1),
TROUPE_API_KEY and TROUPE_MODEL; exits non-zero with a message on the
first check that fails.
"""

import json
import os
import sys

import openai
from openai import OpenAI


def check(condition, message):
    if not condition:
        print(f"FAILED: {message}", file=sys.stderr)
        sys.exit(1)


def main():
    base_url = os.environ["TROUPE_BASE_URL"]
    api_key = os.environ["TROUPE_API_KEY"]
    model = os.environ["TROUPE_MODEL"]
    client = OpenAI(base_url=base_url, api_key=api_key, max_retries=0, timeout=120)
    messages = [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "Tell me a story."},
    ]
    greedy = dict(model=model, messages=messages, max_tokens=12, temperature=0, seed=3,
                  extra_body={"ignore_eos": True})

    ids = [m.id for m in client.models.list()]
    check(model in ids, f"{model} not in /v1/models: {ids}")

    whole = client.chat.completions.create(**greedy)
    choice = whole.choices[0]
    check(choice.message.role == "assistant", f"role {choice.message.role}")
    check(choice.finish_reason == "length", f"finish_reason {choice.finish_reason}")
    check(whole.usage.completion_tokens == 12, f"usage {whole.usage}")
    check(whole.usage.total_tokens == whole.usage.prompt_tokens + 12, f"usage {whole.usage}")

    stream = client.chat.completions.create(
        **greedy, stream=True, stream_options={"include_usage": True})
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    check(text == choice.message.content,
          f"streamed {text!r} differs from {choice.message.content!r}")
    finishes = [c.choices[0].finish_reason for c in chunks
                if c.choices and c.choices[0].finish_reason]
    check(finishes == ["length"], f"stream finish reasons {finishes}")
    check(chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 12,
          f"stream usage {chunks[-1].usage}")

    schema = {
        "type": "object",
        "properties": {
            "title": {"type": "string", "maxLength": 20},
            "rating": {"type": "integer", "minimum": 1, "maximum": 5},
        },
        "required": ["title", "rating"],
        "additionalProperties": False,
    }
    structured = client.chat.completions.create(
        model=model, messages=messages, max_tokens=300, temperature=0,
        response_format={"type": "json_schema",
                         "json_schema": {"name": "review", "schema": schema, "strict": True}})
    check(structured.choices[0].finish_reason == "stop",
          f"json_schema finish_reason {structured.choices[0].finish_reason}")
    review = json.loads(structured.choices[0].message.content)
    check(set(review) == {"title", "rating"}, f"keys {sorted(review)}")
    check(isinstance(review["title"], str) and len(review["title"]) <= 20, f"title {review}")
    check(isinstance(review["rating"], int) and 1 <= review["rating"] <= 5, f"rating {review}")

    tools = [{
        "type": "function",
        "function": {
            "name": "lookup",
            "description": "Look a word up.",
            "parameters": {
                "type": "object",
                "properties": {"word": {"type": "string", "maxLength": 12}},
                "required": ["word"],
            },
        },
    }]
    called = client.chat.completions.create(
        model=model, messages=messages, max_tokens=200, temperature=0,
        tools=tools, tool_choice="required")
    check(called.choices[0].finish_reason == "tool_calls",
          f"tools finish_reason {called.choices[0].finish_reason}")
    call = called.choices[0].message.tool_calls[0]
    check(call.function.name == "lookup", f"called {call.function.name}")
    arguments = json.loads(call.function.arguments)
    check(isinstance(arguments.get("word"), str), f"arguments {arguments}")

    completion = client.completions.create(
        model=model, prompt="Once", max_tokens=4, temperature=0,
        extra_body={"ignore_eos": True})
    check(completion.usage.completion_tokens == 4, f"completion usage {completion.usage}")

    # The client asks for base64 unless told otherwise and decodes it itself;
    # both encodings must give the same unit vectors.
    texts = ["a cat sat", "stock markets fell", "a cat sat"]
    embedded = client.embeddings.create(model=model, input=texts)
    vectors = [d.embedding for d in sorted(embedded.data, key=lambda d: d.index)]
    check(len(vectors) == 3, f"{len(vectors)} embeddings for 3 inputs")
    width = len(vectors[0])
    check(width > 0 and all(len(v) == width for v in vectors), "embedding widths differ")
    for v in vectors:
        norm = sum(x * x for x in v) ** 0.5
        check(abs(norm - 1.0) < 1e-4, f"embedding norm {norm}")
    check(vectors[0] == vectors[2], "the same text gave different embeddings")
    check(vectors[0] != vectors[1], "different texts gave the same embedding")
    check(embedded.usage.prompt_tokens > 0
          and embedded.usage.total_tokens == embedded.usage.prompt_tokens,
          f"embedding usage {embedded.usage}")
    floats = client.embeddings.create(model=model, input="a cat sat", encoding_format="float",
                                      dimensions=width)
    cosine = sum(a * b for a, b in zip(floats.data[0].embedding, vectors[0]))
    check(cosine > 0.9999, f"float and base64 embeddings differ: cosine {cosine}")
    try:
        client.embeddings.create(model=model, input="x", dimensions=width + 1)
        check(False, "dimensions other than the model's were accepted")
    except openai.BadRequestError as error:
        check("dimensions" in str(error), f"message {error}")

    try:
        client.chat.completions.create(model="no-such-model", messages=messages, max_tokens=1)
        check(False, "an unknown model was accepted")
    except openai.NotFoundError as error:
        check(error.status_code == 404, f"status {error.status_code}")

    try:
        client.chat.completions.create(**{**greedy, "max_tokens": 1_000_000})
        check(False, "max_tokens beyond the context was accepted")
    except openai.BadRequestError as error:
        check("max_tokens" in str(error), f"message {error}")

    wrong = OpenAI(base_url=base_url, api_key=api_key + "-wrong", max_retries=0)
    try:
        wrong.models.list()
        check(False, "a wrong API key was accepted")
    except openai.AuthenticationError:
        pass

    print("openai client checks passed")


if __name__ == "__main__":
    main()
