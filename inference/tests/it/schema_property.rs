//! Property test of the JSON Schema grammars: for schemas like the ones
//! troupe uses (worker actions, plans, tool calls, recursive trees, unions),
//! many random strings drawn from the grammar must all parse as JSON and pass
//! `validate`, and the samples must cover the schema (every enum value, the
//! length bounds, optional properties both present and absent), so that a
//! grammar that only ever produced one safe string would fail.

#[allow(dead_code)]
use crate::schema_support;

use std::collections::BTreeSet;

use schema_support::{Grammar, Rng};
use serde_json::{json, Value};
use troupe_inference::schema::JsonSchema;

const SAMPLES: usize = 400;

/// Draws `SAMPLES` strings, checks each, and returns the parsed values;
/// at least `min_distinct` of the strings must differ.
fn samples(name: &str, schema: &Value, seed: u64, min_distinct: usize) -> Vec<Value> {
    let compiled = JsonSchema::compile(schema).unwrap_or_else(|e| panic!("{name}: {e}"));
    let grammar = Grammar::parse(compiled.gbnf())
        .unwrap_or_else(|e| panic!("{name}: {e}\n{}", compiled.gbnf()));
    let mut rng = Rng::new(seed);
    let mut values = Vec::new();
    let mut distinct = BTreeSet::new();
    for i in 0..SAMPLES {
        let text = grammar.sample(&mut rng, 24);
        let value: Value = serde_json::from_str(&text).unwrap_or_else(|e| {
            panic!(
                "{name}: sample is not JSON ({e}): {text}\n{}",
                compiled.gbnf()
            )
        });
        if let Err(violation) = compiled.validate(&value) {
            panic!(
                "{name}: sample {text} breaks the schema: {violation}\n{}",
                compiled.gbnf()
            );
        }
        if i % 40 == 0 {
            assert!(
                grammar.accepts(&text),
                "{name}: the recogniser disagrees with the sampler on {text}"
            );
        }
        distinct.insert(text);
        values.push(value);
    }
    schema_support::dump(
        compiled.gbnf(),
        &distinct.iter().map(String::as_str).collect::<Vec<_>>(),
        &[],
    );
    assert!(
        distinct.len() >= min_distinct,
        "{name}: only {} distinct samples",
        distinct.len()
    );
    values
}

fn seen<'a>(values: &'a [Value], pointer: &str) -> Vec<&'a Value> {
    values.iter().filter_map(|v| v.pointer(pointer)).collect()
}

#[test]
fn worker_actions() {
    let schema = json!({
        "anyOf": [
            {
                "type": "object",
                "properties": {
                    "thought": {"type": "string", "maxLength": 30},
                    "action": {
                        "type": "object",
                        "properties": {
                            "tool": {"type": "string", "enum": ["shell", "read_file", "write_file", "http_get"]},
                            "args": {"type": "object", "additionalProperties": {"type": ["string", "integer", "boolean"]}}
                        },
                        "required": ["tool", "args"],
                        "additionalProperties": false
                    }
                },
                "required": ["thought", "action"]
            },
            {"type": "object", "properties": {"thought": {"type": "string"}, "final": {"type": "string"}}, "required": ["final"]}
        ]
    });
    let values = samples("worker action", &schema, 1, 100);
    let tools: BTreeSet<&str> = seen(&values, "/action/tool")
        .iter()
        .filter_map(|v| v.as_str())
        .collect();
    assert_eq!(tools.len(), 4, "every tool is sampled: {tools:?}");
    assert!(!seen(&values, "/final").is_empty());
    assert!(values
        .iter()
        .any(|v| v.get("final").is_some() && v.get("thought").is_none()));
    assert!(seen(&values, "/action/args")
        .iter()
        .any(|a| a.as_object().is_some_and(|m| m.len() >= 2)));
}

#[test]
fn plans() {
    let schema = json!({
        "type": "object",
        "properties": {
            "goal": {"type": "string", "maxLength": 20},
            "subtasks": {
                "type": "array",
                "minItems": 1,
                "maxItems": 6,
                "items": {
                    "type": "object",
                    "properties": {
                        "id": {"type": "integer", "minimum": 1, "maximum": 99},
                        "kind": {"enum": ["code", "research", "general"]},
                        "complexity": {"type": "integer", "minimum": 1, "maximum": 10},
                        "description": {"type": "string", "minLength": 1, "maxLength": 40},
                        "depends_on": {"type": "array", "items": {"type": "integer", "minimum": 1}, "maxItems": 3}
                    },
                    "required": ["id", "kind", "complexity", "description"]
                }
            }
        },
        "required": ["goal", "subtasks"]
    });
    let values = samples("plan", &schema, 2, 100);
    let lengths: BTreeSet<usize> = seen(&values, "/subtasks")
        .iter()
        .filter_map(|v| v.as_array().map(Vec::len))
        .collect();
    assert!(
        lengths.contains(&1) && lengths.contains(&6),
        "lengths {lengths:?}"
    );
    let complexity: BTreeSet<i64> = values
        .iter()
        .flat_map(|v| {
            v["subtasks"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|t| t["complexity"].as_i64())
        })
        .collect();
    assert!(
        complexity.contains(&1) && complexity.contains(&10),
        "complexities {complexity:?}"
    );
    assert!(values
        .iter()
        .any(|v| v["subtasks"][0].get("depends_on").is_none()));
}

fn depth(value: &Value) -> usize {
    value["children"]
        .as_array()
        .map_or(0, |c| 1 + c.iter().map(depth).max().unwrap_or(0))
}

#[test]
fn recursive_trees() {
    let schema = json!({
        "$ref": "#/definitions/node",
        "definitions": {
            "node": {
                "type": "object",
                "properties": {
                    "label": {"type": "string", "maxLength": 3},
                    "children": {"type": "array", "items": {"$ref": "#/definitions/node"}, "maxItems": 3}
                },
                "required": ["label"]
            }
        }
    });
    let values = samples("tree", &schema, 3, 100);
    assert!(values.iter().any(|v| depth(v) >= 3), "some tree is deep");
}

#[test]
fn any_of_mixed_alternatives() {
    let schema = json!({"anyOf": [
        {"type": "integer", "minimum": -20, "maximum": 20},
        {"type": "string", "enum": ["x", "y"]},
        {"type": "null"},
        {"type": "array", "items": {"type": "boolean"}, "maxItems": 2}
    ]});
    let values = samples("anyOf", &schema, 4, 50);
    for check in [
        Value::is_i64,
        Value::is_string,
        Value::is_null,
        Value::is_array,
    ] {
        assert!(values.iter().any(check));
    }
    assert!(
        values.iter().any(|v| v.as_i64() == Some(-20))
            && values.iter().any(|v| v.as_i64() == Some(20))
    );
}

#[test]
fn bounded_arrays_of_bounded_strings() {
    let schema = json!({"type": "array", "items": {"type": "string", "minLength": 1, "maxLength": 4}, "minItems": 2, "maxItems": 5});
    let values = samples("bounded arrays", &schema, 5, 100);
    let lengths: BTreeSet<usize> = values
        .iter()
        .filter_map(|v| v.as_array().map(Vec::len))
        .collect();
    assert_eq!(lengths, BTreeSet::from([2, 3, 4, 5]));
    let escaped = values
        .iter()
        .flat_map(|v| v.as_array().into_iter().flatten())
        .filter_map(Value::as_str);
    assert!(
        escaped.clone().any(|s| s.chars().count() == 4)
            && escaped.clone().any(|s| s.chars().count() == 1)
    );
}

#[test]
fn string_enums_with_escapes() {
    let options = ["a", "b\"c", "ünï", "line\nbreak", "😀", "back\\slash"];
    let values = samples("string enum", &json!({"enum": options}), 6, 6);
    let found: BTreeSet<&str> = values.iter().filter_map(Value::as_str).collect();
    assert_eq!(found, options.into_iter().collect());
}

#[test]
fn nullable_unions() {
    let schema = json!({
        "type": "object",
        "properties": {
            "name": {"type": ["string", "null"]},
            "age": {"type": ["integer", "null"], "minimum": 0, "maximum": 150},
            "score": {"type": ["number", "null"]},
            "tags": {"type": ["array", "null"], "items": {"type": "string"}}
        },
        "required": ["name"]
    });
    let values = samples("nullable", &schema, 7, 100);
    assert!(
        values.iter().any(|v| v["name"].is_null()) && values.iter().any(|v| v["name"].is_string())
    );
    assert!(
        values.iter().any(|v| v.get("age").is_none()) && values.iter().any(|v| v["age"].is_u64())
    );
    assert!(values.iter().any(|v| v["score"].is_f64()));
}

#[test]
fn formats_and_tool_calls() {
    let dates = json!({
        "type": "object",
        "properties": {
            "day": {"type": "string", "format": "date"},
            "at": {"type": "string", "format": "date-time"},
            "id": {"type": "string", "format": "uuid"}
        },
        "required": ["day", "at", "id"]
    });
    let values = samples("formats", &dates, 8, 100);
    assert!(values
        .iter()
        .any(|v| v["day"].as_str().is_some_and(|d| d.ends_with("-02-29"))));
    let tool_call = json!({
        "type": "object",
        "properties": {
            "name": {"const": "get_weather"},
            "arguments": {
                "type": "object",
                "properties": {"city": {"type": "string"}, "unit": {"enum": ["c", "f"]}, "days": {"type": "integer", "exclusiveMinimum": 0, "maximum": 14}},
                "required": ["city"],
                "additionalProperties": false
            }
        },
        "required": ["name", "arguments"]
    });
    samples("tool call", &tool_call, 9, 100);
}

#[test]
fn open_objects_tuples_and_discriminated_one_of() {
    let open = json!({"type": "object", "properties": {"id": {"type": "integer"}}, "additionalProperties": {"type": "boolean"}});
    let values = samples("open object", &open, 10, 100);
    assert!(values
        .iter()
        .any(|v| v.as_object().is_some_and(|m| m.len() >= 3)));
    let tuple = json!({"type": "array", "prefixItems": [{"type": "string"}, {"type": "number"}, {"type": "boolean"}], "items": false, "minItems": 2});
    let values = samples("tuple", &tuple, 11, 100);
    assert!(values
        .iter()
        .all(|v| v.as_array().is_some_and(|a| (2..=3).contains(&a.len()))));
    let one_of = json!({
        "oneOf": [
            {"type": "object", "properties": {"type": {"const": "text"}, "text": {"type": "string"}}, "required": ["type", "text"]},
            {"type": "object", "properties": {"type": {"const": "image"}, "url": {"type": "string"}}, "required": ["type", "url"]},
            {"type": "array", "items": {"$ref": "#"}, "maxItems": 2}
        ]
    });
    samples("oneOf", &one_of, 12, 100);
    samples("any JSON", &json!({}), 13, 100);
}
