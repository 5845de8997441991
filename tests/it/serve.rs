//! `troupe serve` end to end: the HTTP API over a real ModelHost and the
//! llama.cpp engine, with synthetic models, driven over a socket the way
//! OpenAI clients drive it. One server is shared by every test (see
//! `support::server`).

use crate::support;

use std::time::Duration;

use serde_json::{json, Value};
use support::server::{BUDGET, CONTEXT, MAX_BODY_BYTES, SLOTS};
use support::{metric, sse_data, Client, API_KEY};

fn chat(model: &str, max_tokens: u32) -> Value {
    json!({
        "model": model,
        "messages": [
            {"role": "system", "content": "You are terse."},
            {"role": "user", "content": "Say something."}
        ],
        "max_tokens": max_tokens,
        "temperature": 0,
        "seed": 7,
    })
}

fn assert_openai_error(body: &Value, kind: &str) {
    let error = &body["error"];
    assert_eq!(error["type"], kind, "{body}");
    assert!(
        error["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{body}"
    );
    assert!(
        error.get("param").is_some() && error.get("code").is_some(),
        "{body}"
    );
}

/// The chunks of a stream, checking it ends with `[DONE]`.
fn chunks(data: &[String]) -> Vec<Value> {
    assert_eq!(data.last().map(String::as_str), Some("[DONE]"), "{data:?}");
    data[..data.len() - 1]
        .iter()
        .map(|d| serde_json::from_str(d).expect("chunk is JSON"))
        .collect()
}

#[tokio::test]
async fn health_answers_without_the_key() {
    let client = Client::connect();
    let response = client.http.get(client.url("/health")).send().await.unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["status"], "ok");
}

#[tokio::test]
async fn other_routes_need_the_api_key() {
    let client = Client::connect();
    let missing = client
        .http
        .get(client.url("/v1/models"))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status().as_u16(), 401);
    assert_eq!(missing.headers()["www-authenticate"], "Bearer");
    let body: Value = missing.json().await.unwrap();
    assert_openai_error(&body, "invalid_request_error");
    assert_eq!(body["error"]["code"], "invalid_api_key");

    for path in ["/v1/models", "/metrics", "/api/ps"] {
        let wrong = client
            .http
            .get(client.url(path))
            .bearer_auth(format!("{API_KEY}x"))
            .send()
            .await
            .unwrap();
        assert_eq!(wrong.status().as_u16(), 401, "{path}");
    }
    let wrong_post = client
        .http
        .post(client.url("/v1/chat/completions"))
        .bearer_auth("nope")
        .json(&chat("tiny", 1))
        .send()
        .await
        .unwrap();
    assert_eq!(wrong_post.status().as_u16(), 401);

    let (status, _) = client.get("/v1/models").await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn models_lists_the_catalog() {
    let client = Client::connect();
    let (status, body) = client.get("/v1/models").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["object"], "list");
    let ids: Vec<&str> = body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    for name in support::server::MODELS {
        assert!(ids.contains(&name), "{name} missing from {ids:?}");
    }
    let (status, one) = client.get("/v1/models/tiny").await;
    assert_eq!(status, 200);
    assert_eq!(one["id"], "tiny");
    assert_eq!(one["object"], "model");
    let (status, body) = client.get("/v1/models/nope").await;
    assert_eq!(status, 404);
    assert_eq!(body["error"]["code"], "model_not_found");
}

#[tokio::test]
async fn chat_completion_answers_with_usage() {
    let client = Client::connect();
    let mut request = chat("tiny", 6);
    request["ignore_eos"] = json!(true);
    let (status, body) = client.post("/v1/chat/completions", &request).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["object"], "chat.completion");
    assert_eq!(body["model"], "tiny");
    assert!(body["id"].as_str().unwrap().starts_with("chatcmpl-"));
    let choice = &body["choices"][0];
    assert_eq!(choice["message"]["role"], "assistant");
    assert!(choice["message"]["content"].is_string(), "{body}");
    assert_eq!(choice["finish_reason"], "length");
    let usage = &body["usage"];
    assert_eq!(usage["completion_tokens"], 6);
    let prompt = usage["prompt_tokens"].as_u64().unwrap();
    assert!(prompt > 5, "{usage}");
    assert_eq!(usage["total_tokens"].as_u64().unwrap(), prompt + 6);
}

#[tokio::test]
async fn a_stream_carries_the_same_text_as_the_whole_answer() {
    let client = Client::connect();
    let mut request = chat("solo", 24);
    request["ignore_eos"] = json!(true);
    let (status, whole) = client.post("/v1/chat/completions", &request).await;
    assert_eq!(status, 200, "{whole}");
    let text = whole["choices"][0]["message"]["content"].as_str().unwrap();
    assert!(!text.is_empty());

    request["stream"] = json!(true);
    request["stream_options"] = json!({"include_usage": true});
    let (status, data) = client.post_stream("/v1/chat/completions", &request).await;
    assert_eq!(status, 200);
    let chunks = chunks(&data);
    assert!(chunks
        .iter()
        .all(|c| c["object"] == "chat.completion.chunk"));
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    let streamed: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(streamed, text);
    let finishes: Vec<&Value> = chunks
        .iter()
        .map(|c| &c["choices"][0]["finish_reason"])
        .filter(|f| !f.is_null())
        .collect();
    assert_eq!(finishes, [&json!("length")]);
    let usage = &chunks.last().unwrap()["usage"];
    assert_eq!(chunks.last().unwrap()["choices"], json!([]));
    assert_eq!(usage["completion_tokens"], 24);
    assert_eq!(usage["prompt_tokens"], whole["usage"]["prompt_tokens"]);
}

#[tokio::test]
async fn json_schema_output_parses_and_matches() {
    let client = Client::connect();
    let schema = json!({
        "type": "object",
        "properties": {
            "name": {"type": "string", "maxLength": 12},
            "age": {"type": "integer", "minimum": 0, "maximum": 120},
            "tags": {"type": "array", "items": {"enum": ["a", "b"]}, "maxItems": 3}
        },
        "required": ["name", "age", "tags"]
    });
    let mut request = chat("tiny", 400);
    request["response_format"] = json!({"type": "json_schema", "json_schema": {"name": "person", "schema": schema, "strict": true}});
    let (status, body) = client.post("/v1/chat/completions", &request).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["choices"][0]["finish_reason"], "stop", "{body}");
    let content = body["choices"][0]["message"]["content"].as_str().unwrap();
    let value: Value = serde_json::from_str(content).expect("the output is JSON");
    let object = value.as_object().unwrap();
    assert_eq!(object.len(), 3, "{value}");
    assert!(value["name"].as_str().unwrap().chars().count() <= 12);
    assert!((0..=120).contains(&value["age"].as_i64().unwrap()));
    let tags = value["tags"].as_array().unwrap();
    assert!(tags.len() <= 3 && tags.iter().all(|t| t == "a" || t == "b"));

    request["response_format"] = json!({"type": "json_object"});
    let (status, body) = client.post("/v1/chat/completions", &request).await;
    assert_eq!(status, 200, "{body}");
    let content = body["choices"][0]["message"]["content"].as_str().unwrap();
    if body["choices"][0]["finish_reason"] == "stop" {
        assert!(serde_json::from_str::<Value>(content).unwrap().is_object());
    } else {
        assert!(content.trim_start().starts_with('{'), "{content}");
    }
}

fn weather_tool() -> Value {
    json!([{
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Current weather in a city.",
            "parameters": {
                "type": "object",
                "properties": {
                    "city": {"type": "string", "maxLength": 10},
                    "unit": {"enum": ["c", "f"]}
                },
                "required": ["city", "unit"]
            }
        }
    }])
}

fn assert_weather_call(call: &Value) {
    assert_eq!(call["type"], "function");
    assert!(call["id"].as_str().unwrap().starts_with("call_"));
    assert_eq!(call["function"]["name"], "get_weather");
    let arguments: Value =
        serde_json::from_str(call["function"]["arguments"].as_str().unwrap()).unwrap();
    assert!(arguments["city"].as_str().unwrap().chars().count() <= 10);
    assert!(
        arguments["unit"] == "c" || arguments["unit"] == "f",
        "{arguments}"
    );
}

#[tokio::test]
async fn tools_give_tool_calls_with_json_arguments() {
    let client = Client::connect();
    let mut request = chat("tiny", 300);
    request["tools"] = weather_tool();
    request["tool_choice"] = json!("required");
    let (status, body) = client.post("/v1/chat/completions", &request).await;
    assert_eq!(status, 200, "{body}");
    let choice = &body["choices"][0];
    assert_eq!(choice["finish_reason"], "tool_calls", "{body}");
    assert!(choice["message"]["content"].is_null());
    assert_weather_call(&choice["message"]["tool_calls"][0]);

    request["tool_choice"] = json!({"type": "function", "function": {"name": "get_weather"}});
    request["stream"] = json!(true);
    let (status, data) = client.post_stream("/v1/chat/completions", &request).await;
    assert_eq!(status, 200);
    let chunks = chunks(&data);
    // As OpenAI streams a call: the first delta has its id, type and name,
    // the next ones pieces of its arguments.
    let deltas: Vec<&Value> = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["tool_calls"].get(0))
        .collect();
    assert!(
        deltas.len() >= 2,
        "the call came in {} delta(s)",
        deltas.len()
    );
    assert!(deltas.iter().all(|d| d["index"] == 0));
    let mut call = deltas[0].clone();
    call["function"]["arguments"] = json!(deltas
        .iter()
        .map(|d| d["function"]["arguments"].as_str().unwrap_or(""))
        .collect::<String>());
    assert_weather_call(&call);
    assert_eq!(
        chunks.last().unwrap()["choices"][0]["finish_reason"],
        "tool_calls"
    );

    request["stream"] = json!(false);
    request["tool_choice"] = json!({"type": "function", "function": {"name": "other"}});
    let (status, body) = client.post("/v1/chat/completions", &request).await;
    assert_eq!(status, 400);
    assert_eq!(body["error"]["param"], "tool_choice");
}

/// A real model (SmolLM2-135M-Instruct) asked with `tools`: the call comes
/// back well formed (a known function, JSON arguments of its schema) and on
/// topic.
#[tokio::test]
async fn a_real_model_answers_tools_with_a_well_formed_call() {
    let client = Client::connect();
    let request = json!({
        "model": support::server::REAL_MODEL,
        "messages": [{"role": "user", "content": "What is the weather in Paris in celsius?"}],
        "tools": weather_tool(),
        "tool_choice": "required",
        "max_tokens": 64,
        "temperature": 0,
    });
    let (status, body) = client.post("/v1/chat/completions", &request).await;
    assert_eq!(status, 200, "{body}");
    let choice = &body["choices"][0];
    assert_eq!(choice["finish_reason"], "tool_calls", "{body}");
    let call = &choice["message"]["tool_calls"][0];
    assert_weather_call(call);
    let arguments: Value =
        serde_json::from_str(call["function"]["arguments"].as_str().unwrap()).unwrap();
    assert!(
        arguments["city"].as_str().unwrap().contains("Paris"),
        "{arguments}"
    );
    assert!(
        body["usage"]["prompt_tokens"].as_u64().unwrap() > 20,
        "{body}"
    );
}

#[tokio::test]
async fn completions_whole_and_streamed() {
    let client = Client::connect();
    let request = json!({
        "model": "tiny",
        "prompt": "Once upon a time",
        "max_tokens": 5,
        "temperature": 0,
        "ignore_eos": true,
    });
    let (status, body) = client.post("/v1/completions", &request).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["object"], "text_completion");
    assert_eq!(body["choices"][0]["finish_reason"], "length");
    assert_eq!(body["usage"]["completion_tokens"], 5);
    let text = body["choices"][0]["text"].as_str().unwrap();

    assert!(!text.is_empty());

    let mut streamed = request.clone();
    streamed["stream"] = json!(true);
    streamed["stream_options"] = json!({"include_usage": true});
    let (status, data) = client.post_stream("/v1/completions", &streamed).await;
    assert_eq!(status, 200);
    let chunks = chunks(&data);
    assert!(chunks.iter().all(|c| c["object"] == "text_completion"));
    let joined: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["text"].as_str())
        .collect();
    assert!(!joined.is_empty());
    let last = chunks.last().unwrap();
    assert_eq!(last["choices"][0]["finish_reason"], "length");
    assert_eq!(last["usage"]["completion_tokens"], 5);
}

/// The vector of one `data` entry of an embeddings answer.
fn vector_of(entry: &Value) -> Vec<f32> {
    entry["embedding"]
        .as_array()
        .expect("a float array")
        .iter()
        .map(|x| x.as_f64().expect("a number") as f32)
        .collect()
}

#[tokio::test]
async fn embeddings_give_unit_vectors_in_input_order() {
    let client = Client::connect();
    let (status, one) = client
        .post(
            "/v1/embeddings",
            &json!({"model": "tiny", "input": "hello there"}),
        )
        .await;
    assert_eq!(status, 200, "{one}");
    assert_eq!(one["object"], "list");
    assert_eq!(one["model"], "tiny");
    assert_eq!(one["data"].as_array().unwrap().len(), 1);
    assert_eq!(one["data"][0]["object"], "embedding");
    assert_eq!(one["data"][0]["index"], 0);
    let single = vector_of(&one["data"][0]);
    let n_embd = single.len();
    assert!(n_embd > 0);
    let norm = single.iter().map(|x| x * x).sum::<f32>().sqrt();
    assert!((norm - 1.0).abs() < 1e-4, "norm {norm}");
    let prompt_tokens = one["usage"]["prompt_tokens"].as_u64().unwrap();
    assert!(prompt_tokens > 0);
    assert_eq!(one["usage"]["total_tokens"], prompt_tokens);

    let inputs = ["first", "hello there", "something else entirely"];
    let (status, list) = client
        .post(
            "/v1/embeddings",
            &json!({"model": "tiny", "input": inputs, "dimensions": n_embd}),
        )
        .await;
    assert_eq!(status, 200, "{list}");
    let data = list["data"].as_array().unwrap();
    assert_eq!(data.len(), 3);
    for (i, entry) in data.iter().enumerate() {
        assert_eq!(entry["index"], i);
        assert_eq!(vector_of(entry).len(), n_embd);
    }
    let cosine: f32 = vector_of(&data[1])
        .iter()
        .zip(&single)
        .map(|(a, b)| a * b)
        .sum();
    assert!(cosine > 0.9999, "same text, same vector: cosine {cosine}");
    assert_ne!(vector_of(&data[0]), vector_of(&data[2]));
    assert!(list["usage"]["prompt_tokens"].as_u64().unwrap() > prompt_tokens);

    // base64: the little-endian f32 bytes of the same vector.
    let (status, encoded) = client
        .post(
            "/v1/embeddings",
            &json!({"model": "tiny", "input": "hello there", "encoding_format": "base64"}),
        )
        .await;
    assert_eq!(status, 200, "{encoded}");
    let text = encoded["data"][0]["embedding"].as_str().expect("a string");
    let bytes = base64::Engine::decode(&base64::engine::general_purpose::STANDARD, text)
        .expect("valid base64");
    let decoded: Vec<f32> = bytes
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    assert_eq!(decoded, single);
}

#[tokio::test]
async fn bad_embedding_requests_get_400_naming_the_field() {
    let client = Client::connect();
    let cases = [
        (json!({"model": "tiny", "input": []}), "input"),
        (json!({"model": "tiny", "input": ["ok", ""]}), "input"),
        (json!({"model": "tiny", "input": [1, 2, 3]}), "input"),
        (json!({"model": "tiny", "input": [[1, 2], [3]]}), "input"),
        (
            json!({"model": "tiny", "input": "ok", "dimensions": 3}),
            "dimensions",
        ),
    ];
    for (request, param) in cases {
        let (status, body) = client.post("/v1/embeddings", &request).await;
        assert_eq!(status, 400, "{request} -> {body}");
        assert_openai_error(&body, "invalid_request_error");
        assert_eq!(body["error"]["param"], param, "{request} -> {body}");
    }
    let long = "word ".repeat(CONTEXT as usize + 10);
    let (status, body) = client
        .post(
            "/v1/embeddings",
            &json!({"model": "tiny", "input": ["ok", long]}),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["code"], "context_length_exceeded");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("input 1"),
        "{body}"
    );
    let (status, body) = client
        .post(
            "/v1/embeddings",
            &json!({"model": "tiny", "input": "ok", "encoding_format": "hex"}),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    let (status, _) = client
        .post(
            "/v1/embeddings",
            &json!({"model": "no-such-model", "input": "ok"}),
        )
        .await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn oversized_bodies_get_413() {
    let client = Client::connect();
    let mut request = chat("tiny", 1);
    request["messages"][1]["content"] = json!("x".repeat(MAX_BODY_BYTES + 1));
    let (status, body) = client.post("/v1/chat/completions", &request).await;
    assert_eq!(status, 413, "{body}");
    assert_openai_error(&body, "invalid_request_error");
    assert_eq!(body["error"]["code"], "request_too_large");
}

#[tokio::test]
async fn malformed_requests_get_400_with_an_openai_error() {
    let client = Client::connect();
    let (status, body) = client
        .post_raw("/v1/chat/completions", b"{\"model\": \"tiny\", ".to_vec())
        .await;
    assert_eq!(status, 400, "{body}");
    assert_openai_error(&body, "invalid_request_error");

    let (status, body) = client
        .post("/v1/chat/completions", &json!({"model": "tiny"}))
        .await;
    assert_eq!(status, 400, "{body}");
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("messages"));

    let mut bad_role = chat("tiny", 1);
    bad_role["messages"][0]["role"] = json!("wizard");
    let (status, body) = client.post("/v1/chat/completions", &bad_role).await;
    assert_eq!(status, 400);
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("wizard"));
}

#[tokio::test]
async fn an_unknown_model_gets_404() {
    let client = Client::connect();
    let (status, body) = client
        .post("/v1/chat/completions", &chat("no-such-model", 1))
        .await;
    assert_eq!(status, 404, "{body}");
    assert_openai_error(&body, "invalid_request_error");
    assert_eq!(body["error"]["code"], "model_not_found");
}

#[tokio::test]
async fn max_tokens_beyond_the_context_gets_400() {
    let client = Client::connect();
    let (status, body) = client
        .post("/v1/chat/completions", &chat("tiny", CONTEXT + 1))
        .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["code"], "context_length_exceeded");
    assert_eq!(body["error"]["param"], "max_tokens");
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains(&CONTEXT.to_string()));
}

#[tokio::test]
async fn ollama_tags_and_ps_list_models() {
    let client = Client::connect();
    let (status, tags) = client.get("/api/tags").await;
    assert_eq!(status, 200, "{tags}");
    let tiny = tags["models"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == "tiny")
        .expect("tiny listed");
    assert_eq!(tiny["details"]["format"], "gguf");
    assert_eq!(tiny["details"]["family"], "llama");
    assert_eq!(tiny["details"]["quantization_level"], "Q8_0");
    assert!(tiny["size"].as_u64().unwrap() > 0);
    assert!(tiny["modified_at"].as_str().unwrap().ends_with('Z'));

    let (status, _) = client.post("/v1/chat/completions", &chat("tiny", 1)).await;
    assert_eq!(status, 200);
    let (status, ps) = client.get("/api/ps").await;
    assert_eq!(status, 200, "{ps}");
    assert_eq!(ps["budget_bytes"], BUDGET);
    let loaded = ps["models"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == "tiny")
        .expect("tiny loaded");
    assert_eq!(loaded["context_length"], CONTEXT);
    assert_eq!(loaded["troupe"]["slots"], SLOTS);
    assert!(loaded["size"].as_u64().unwrap() > 0);
    // Null while a request of another test is running on it.
    let expires = &loaded["expires_at"];
    assert!(
        expires.is_null() || expires.as_str().unwrap().ends_with('Z'),
        "{expires}"
    );
}

#[tokio::test]
async fn metrics_count_requests_tokens_and_memory() {
    let client = Client::connect();
    let series = "troupe_http_requests_total{route=\"/v1/chat/completions\",status=\"200\"}";
    let (_, before) = client.get_text("/metrics").await;
    let ok_before = metric(&before, series).unwrap_or(0.0);
    let tokens_before = metric(&before, "troupe_completion_tokens_total").unwrap();
    let mut request = chat("tiny", 3);
    request["ignore_eos"] = json!(true);
    let (status, _) = client.post("/v1/chat/completions", &request).await;
    assert_eq!(status, 200);

    let (status, after) = client.get_text("/metrics").await;
    assert_eq!(status, 200);
    assert!(
        metric(&after, series).unwrap() >= ok_before + 1.0,
        "{after}"
    );
    assert!(metric(&after, "troupe_completion_tokens_total").unwrap() >= tokens_before + 3.0);
    assert!(metric(&after, "troupe_time_to_first_token_seconds_count").unwrap() >= 1.0);
    assert!(metric(&after, "troupe_model_loads_total").unwrap() >= 1.0);
    assert_eq!(
        metric(&after, "troupe_memory_budget_bytes"),
        Some(BUDGET as f64)
    );
    assert!(metric(&after, "troupe_memory_used_bytes").unwrap() > 0.0);
    for name in [
        "troupe_prompt_tokens_total",
        "troupe_generation_tokens_per_second",
        "troupe_model_evictions_total",
        "troupe_queue_depth",
        "troupe_generations_in_flight",
    ] {
        assert!(metric(&after, name).is_some(), "{name} missing:\n{after}");
        assert!(
            after.contains(&format!("# TYPE {name} ")),
            "{name} has no TYPE"
        );
    }
}

/// The slots_in_use of `model` in `/api/ps`.
async fn slots_in_use(client: &Client, model: &str) -> u64 {
    let (_, ps) = client.get("/api/ps").await;
    ps["models"]
        .as_array()
        .and_then(|models| models.iter().find(|m| m["name"] == model))
        .map_or(0, |m| m["troupe"]["slots_in_use"].as_u64().unwrap())
}

#[tokio::test]
async fn a_client_that_disconnects_frees_its_slot() {
    let client = Client::connect();
    let mut request = chat("drop", CONTEXT - 100);
    request["ignore_eos"] = json!(true);
    request["stream"] = json!(true);
    let mut response = client
        .http
        .post(client.url("/v1/chat/completions"))
        .bearer_auth(API_KEY)
        .json(&request)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    // Read until a chunk with generated text has arrived.
    let mut seen = String::new();
    while !sse_data(&seen)
        .iter()
        .any(|d| d.contains("\"content\"") && !d.contains("\"content\":\"\""))
    {
        let chunk = response.chunk().await.unwrap().expect("the stream goes on");
        seen.push_str(&String::from_utf8_lossy(&chunk));
    }
    assert_eq!(slots_in_use(&client, "drop").await, 1);
    drop(response);

    let mut freed = false;
    for _ in 0..200 {
        if slots_in_use(&client, "drop").await == 0 {
            freed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(freed, "the slot is still in use after the client left");
    let (_, metrics) = client.get_text("/metrics").await;
    assert!(metric(&metrics, "troupe_generations_disconnected_total").unwrap() >= 1.0);
}

#[tokio::test]
async fn the_openai_python_client_works_against_the_server() {
    let has_openai = std::process::Command::new("python3")
        .args(["-c", "import openai"])
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        has_openai,
        "the `openai` Python package is missing: python3 -m pip install openai \
         (scripts/test.sh installs it)"
    );
    let base = format!("{}/v1", support::server().base);
    let env = [
        ("TROUPE_BASE_URL", base.as_str()),
        ("TROUPE_API_KEY", API_KEY),
        ("TROUPE_MODEL", "client"),
    ];
    crate::serve_support::python_client("openai_client.py", &env, &[]).await;
}

/// Issue 15, item 7: a malformed model file dropped into a running server's
/// models directory (here a negative norm epsilon, on which llama.cpp
/// aborts) gets an error for that model naming the field, and the server
/// and its other models keep working.
#[tokio::test]
async fn a_malformed_model_dropped_in_gets_an_error_and_the_server_keeps_serving() {
    let dir = support::server::server().models_dir().to_path_buf();
    let good = dir.join("tiny.gguf");
    let mut bytes = std::fs::read(&good).expect("a model to copy");
    let key = b"llama.attention.layer_norm_rms_epsilon";
    let at = bytes
        .windows(key.len())
        .position(|w| w == key)
        .expect("the synthetic model has the key");
    // After the key: the value type (u32, 6 = f32), then the value.
    let value = at + key.len() + 4;
    bytes[value..value + 4].copy_from_slice(&(-1.0f32).to_le_bytes());
    std::fs::write(dir.join("bad-epsilon.gguf"), &bytes).expect("write the bad model");

    let client = Client::connect();
    let (status, body) = client
        .post("/v1/chat/completions", &chat("bad-epsilon", 4))
        .await;
    assert!((400..600).contains(&status), "{status} {body}");
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("layer_norm_rms_epsilon") && message.contains("bad-epsilon.gguf"),
        "{body}"
    );
    let response = client.http.get(client.url("/health")).send().await.unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let (status, body) = client.post("/v1/chat/completions", &chat("tiny", 4)).await;
    assert_eq!(status, 200, "{body}");
}
