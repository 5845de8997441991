//! An MCP server's input schema, cut down to what troupe can enforce.
//!
//! Every tool's schema becomes one branch of the Worker's action schema,
//! which troupe-inference compiles into a grammar and refuses when a keyword
//! is outside its subset (one `pattern` in one MCP tool would stop every
//! worker). So assertion keywords the grammar cannot enforce are dropped here:
//! the grammar then allows a little more than the server does, and the server
//! still checks its own arguments and answers a bad call with an error the
//! model sees. Annotations are kept.

use serde_json::{Map, Value};

use crate::format::Format;

/// Keywords kept as they are (their values hold no subschemas).
const PLAIN: &[&str] = &[
    "type",
    "required",
    "enum",
    "const",
    "title",
    "description",
    "default",
    "examples",
    "minItems",
    "maxItems",
    "minLength",
    "maxLength",
    "$ref",
];

/// `schema` as an object schema troupe's grammar accepts.
pub fn sanitize_input_schema(schema: &Map<String, Value>) -> Value {
    let mut out = sanitize(&Value::Object(schema.clone()));
    if let Value::Object(map) = &mut out {
        map.insert("type".to_string(), Value::String("object".to_string()));
        map.remove("$schema");
        map.entry("properties")
            .or_insert_with(|| Value::Object(Map::new()));
    }
    out
}

fn sanitize(schema: &Value) -> Value {
    let Some(map) = schema.as_object() else {
        // `true`/`false` subschemas: `true` is "anything"; `false` is only
        // allowed by the grammar in a few places, and a tool's argument the
        // server forbids outright is rare enough to leave to the server.
        return match schema {
            Value::Bool(_) => Value::Object(Map::new()),
            other => other.clone(),
        };
    };
    let is_integer = map.get("type").and_then(Value::as_str) == Some("integer");
    let mut out = Map::new();
    for (key, value) in map {
        match key.as_str() {
            k if PLAIN.contains(&k) => {
                out.insert(key.clone(), value.clone());
            }
            "minimum" | "maximum" if is_integer && value.is_i64() => {
                out.insert(key.clone(), value.clone());
            }
            // Formats the grammar knows; others (`uri`, `email`, ...) are dropped.
            "format" if value.as_str().and_then(Format::parse).is_some() => {
                out.insert(key.clone(), value.clone());
            }
            "properties" | "$defs" | "definitions" => {
                let Some(props) = value.as_object() else {
                    continue;
                };
                let props: Map<String, Value> = props
                    .iter()
                    .map(|(name, s)| (name.clone(), sanitize(s)))
                    .collect();
                out.insert(key.clone(), Value::Object(props));
            }
            // The array form of `items` is not supported: any item then.
            "items" if !value.is_array() => {
                out.insert(key.clone(), sanitize(value));
            }
            "additionalProperties" => {
                let v = match value {
                    Value::Bool(b) => Value::Bool(*b),
                    other => sanitize(other),
                };
                out.insert(key.clone(), v);
            }
            // `oneOf` needs provably disjoint branches; `anyOf` accepts the
            // same values and more, which the server then checks.
            "anyOf" | "oneOf" => {
                if let Some(branches) = value.as_array() {
                    let branches: Vec<Value> = branches.iter().map(sanitize).collect();
                    out.insert("anyOf".to_string(), Value::Array(branches));
                }
            }
            _ => {}
        }
    }
    // `anyOf`/`$ref` next to assertion keywords is refused by the grammar;
    // keep the alternation and the annotations only.
    if out.contains_key("anyOf") || out.contains_key("$ref") {
        out.retain(|k, _| {
            matches!(
                k.as_str(),
                "anyOf" | "$ref" | "title" | "description" | "default" | "examples" | "$defs"
            )
        });
    }
    Value::Object(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn object(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap_or_default()
    }

    #[test]
    fn keeps_what_the_grammar_enforces_and_drops_the_rest() {
        let schema = object(json!({
            "$schema": "http://json-schema.org/draft-07/schema#",
            "type": "object",
            "properties": {
                "path": {"type": "string", "pattern": "^/", "description": "where"},
                "url": {"type": "string", "format": "uri"},
                "n": {"type": "integer", "minimum": 1, "maximum": 9},
                "x": {"type": "number", "minimum": 0.5},
                "mode": {"oneOf": [{"const": "a"}, {"const": "b"}], "default": "a"},
            },
            "required": ["path"],
            "additionalProperties": false,
        }));
        let out = sanitize_input_schema(&schema);
        assert_eq!(
            out,
            json!({
                "type": "object",
                "properties": {
                    "path": {"type": "string", "description": "where"},
                    "url": {"type": "string"},
                    "n": {"type": "integer", "minimum": 1, "maximum": 9},
                    "x": {"type": "number"},
                    "mode": {"anyOf": [{"const": "a"}, {"const": "b"}], "default": "a"},
                },
                "required": ["path"],
                "additionalProperties": false,
            })
        );
    }

    #[test]
    fn a_schema_without_properties_becomes_an_empty_object_schema() {
        let out = sanitize_input_schema(&object(json!({"type": "object"})));
        assert_eq!(out, json!({"type": "object", "properties": {}}));
    }
}
