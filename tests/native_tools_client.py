"""Tool calls in the model's own syntax, through the official clients.

Run by tests/it/native_tools.rs against `troupe serve` holding the real
SmolLM2-135M-Instruct with a template that shows tools the Hermes way.
Reads TROUPE_HOST, TROUPE_API_KEY and TROUPE_MODEL; exits non-zero on the
first failed check. Every request is greedy.
"""

import json
import os
import sys

import ollama
import openai
from openai import OpenAI


def function(name, description, city=None):
    city = city or {"type": "string", "maxLength": 40}
    return {"type": "function", "function": {
        "name": name, "description": description,
        "parameters": {"type": "object", "properties": {"city": city}, "required": ["city"]}}}


WEATHER = function("get_weather", "The current weather in a city")
TIME = function("get_time", "The local time in a city")
# Arguments the model would not write unasked: only the grammar makes it.
WEATHER_LYON = function("get_weather", "The current weather in a city",
                        {"type": "string", "enum": ["Lyon", "Nice"]})


def check(condition, message):
    if not condition:
        print(f"FAILED: {message}", file=sys.stderr)
        sys.exit(1)


def call(cid, name, city):
    return {"id": cid, "type": "function",
            "function": {"name": name, "arguments": json.dumps({"city": city})}}


def checked_calls(choice, what, names=("get_weather", "get_time")):
    """The calls of a choice that must have made some, each well-formed."""
    calls = choice.message.tool_calls or []
    check(choice.finish_reason == "tool_calls" and calls, f"{what}: no calls: {choice}")
    for c in calls:
        check(c.type == "function" and c.id.startswith("call_") and c.function.name in names,
              f"{what}: {c}")
        args = json.loads(c.function.arguments)
        check(isinstance(args.get("city"), str) and set(args) == {"city"}, f"{what}: arguments {args}")
    return calls


def streamed(chunks):
    """Content and calls (id, name, arguments text) joined from a stream."""
    content, calls, finish = "", {}, None
    for chunk in chunks:
        if not chunk.choices:
            continue
        choice = chunk.choices[0]
        finish = choice.finish_reason or finish
        content += choice.delta.content or ""
        for d in choice.delta.tool_calls or []:
            entry = calls.setdefault(d.index, {"id": None, "name": None, "arguments": ""})
            if d.id:
                check(entry["id"] is None, f"call {d.index} got a second id")
                entry["id"] = d.id
            if d.function and d.function.name:
                entry["name"] = d.function.name
            if d.function and d.function.arguments:
                entry["arguments"] += d.function.arguments
    return content, [calls[i] for i in sorted(calls)], finish


def main():
    host = os.environ["TROUPE_HOST"]
    key = os.environ["TROUPE_API_KEY"]
    model = os.environ["TROUPE_MODEL"]
    client = OpenAI(base_url=f"{host}/v1", api_key=key, max_retries=0, timeout=120)
    greedy = dict(model=model, temperature=0, max_tokens=80)
    ask = [{"role": "user", "content": "What is the weather in Paris?"}]

    # A required call, one only: the grammar holds from the first token.
    one = client.chat.completions.create(messages=ask, tools=[WEATHER, TIME], tool_choice="required",
                                         parallel_tool_calls=False, **greedy)
    calls = checked_calls(one.choices[0], "required")
    check(len(calls) == 1 and one.choices[0].message.content is None, f"one call: {one.choices[0]}")
    print("required:", calls[0].function.name, calls[0].function.arguments)

    # The same, streamed: the call's name first (with its id), then its
    # arguments piece by piece, adding up to the same call.
    content, parts, finish = streamed(client.chat.completions.create(
        messages=ask, tools=[WEATHER, TIME], tool_choice="required", parallel_tool_calls=False,
        stream=True, **greedy))
    check(finish == "tool_calls" and content == "" and len(parts) == 1, f"stream: {content!r} {parts} {finish}")
    check(parts[0]["name"] == calls[0].function.name and parts[0]["id"].startswith("call_"), f"stream: {parts}")
    check(json.loads(parts[0]["arguments"]) == json.loads(calls[0].function.arguments), f"stream: {parts}")

    # Several calls in one answer (parallel_tool_calls, OpenAI's default).
    earlier = [
        {"role": "user", "content": "What are the weather and the time in London?"},
        {"role": "assistant", "content": None, "tool_calls": [
            call("call_1", "get_weather", "London"), call("call_2", "get_time", "London")]},
        {"role": "tool", "tool_call_id": "call_1", "content": "Rain, 12 C"},
        {"role": "tool", "tool_call_id": "call_2", "content": "14:05"},
        {"role": "assistant", "content": "It rains in London (12 C); it is 14:05 there."},
        {"role": "user", "content": "What are the weather and the time in Paris?"},
    ]
    several = client.chat.completions.create(messages=earlier, tools=[WEATHER, TIME], tool_choice="required",
                                             **greedy)
    calls = checked_calls(several.choices[0], "parallel")
    print("parallel:", [(c.function.name, c.function.arguments) for c in calls])
    check(len(calls) >= 2, f"parallel: one call only: {several.choices[0]}")
    content, parts, finish = streamed(client.chat.completions.create(
        messages=earlier, tools=[WEATHER, TIME], tool_choice="required", stream=True, **greedy))
    check(finish == "tool_calls" and len(parts) == len(calls), f"parallel stream: {parts} {finish}")
    check(len({p["id"] for p in parts}) == len(parts), f"parallel stream: ids repeat: {parts}")
    check([(p["name"], json.loads(p["arguments"])) for p in parts]
          == [(c.function.name, json.loads(c.function.arguments)) for c in calls], f"parallel stream: {parts}")

    # Free text first, then a call the model opens itself: from its marker
    # on, the lazy grammar holds the call to the tools' schemas (the enum
    # makes it say Lyon or Nice, not the Paris it was asked about).
    lazy = [
        {"role": "user", "content": "What is the weather in London?"},
        {"role": "assistant", "content": "Let me check.", "tool_calls": [call("call_1", "get_weather", "London")]},
        {"role": "user", "content": "What is the weather in Paris?"},
    ]
    mixed = client.chat.completions.create(messages=lazy, tools=[WEATHER_LYON], **greedy)
    choice = mixed.choices[0]
    calls = checked_calls(choice, "auto", names=("get_weather",))
    args = json.loads(calls[0].function.arguments)
    check(choice.message.content and "<tool_call>" not in choice.message.content, f"auto: text {choice}")
    check(args["city"] in ("Lyon", "Nice"), f"auto: the grammar did not hold the call: {args}")
    print("auto:", repr(choice.message.content), calls[0].function.arguments)
    content, parts, finish = streamed(client.chat.completions.create(
        messages=lazy, tools=[WEATHER_LYON], stream=True, **greedy))
    check(content == choice.message.content and finish == "tool_calls", f"auto stream: {content!r} {finish}")
    check([json.loads(p["arguments"]) for p in parts] == [json.loads(c.function.arguments) for c in calls],
          f"auto stream: {parts}")

    # A text response_format goes with tools; parameters that are not an
    # object schema are refused by name.
    texted = client.chat.completions.create(messages=ask, tools=[WEATHER], tool_choice="required",
                                            response_format={"type": "text"}, **greedy)
    checked_calls(texted.choices[0], "response_format text", names=("get_weather",))
    bad = function("get_weather", "x")
    bad["function"]["parameters"] = {"type": "string"}
    try:
        client.chat.completions.create(messages=ask, tools=[bad], **greedy)
        check(False, "non-object parameters were taken")
    except openai.BadRequestError as e:
        check("parameters" in str(e), f"the 400 names parameters: {e}")

    # Without a call the answer is plain text, never the marker.
    plain = client.chat.completions.create(messages=ask, tools=[WEATHER, TIME], **greedy)
    choice = plain.choices[0]
    check(choice.message.tool_calls is None and "<tool_call>" not in (choice.message.content or "x"),
          f"plain: {choice}")

    # Ollama's client: the call comes back with its arguments as an object,
    # whole and streamed.
    o = ollama.Client(host=host, headers={"Authorization": f"Bearer {key}"})
    history = [
        {"role": "user", "content": "What is the weather in London?"},
        {"role": "assistant", "content": "", "tool_calls": [
            {"function": {"name": "get_weather", "arguments": {"city": "London"}}}]},
        {"role": "user", "content": "What is the weather in Paris?"},
    ]
    options = {"temperature": 0, "num_predict": 80}
    whole = o.chat(model=model, messages=history, tools=[WEATHER, TIME], options=options)
    ocalls = whole.message.tool_calls or []
    check(len(ocalls) >= 1 and all(isinstance(c.function.arguments, dict) for c in ocalls), f"ollama: {whole}")
    pieces = list(o.chat(model=model, messages=history, tools=[WEATHER, TIME], options=options, stream=True))
    scalls = [c for p in pieces for c in (p.message.tool_calls or [])]
    check([(c.function.name, c.function.arguments) for c in scalls]
          == [(c.function.name, c.function.arguments) for c in ocalls], f"ollama stream: {pieces}")
    check(pieces[-1].done and pieces[-1].eval_count > 0, f"ollama stream end: {pieces[-1]}")
    print("ollama:", [(c.function.name, c.function.arguments) for c in ocalls])


if __name__ == "__main__":
    main()
