//! A validator for the small JSON Schema subset tool arguments use: `object`
//! with `properties`, `required` and `additionalProperties: false`; `string`,
//! `integer`, `number`, `boolean` and `array` (with `items`); `enum`; and
//! `minimum`/`maximum`. Grammar-constrained decoding already keeps the model
//! inside the schema, but arguments can also come from elsewhere (a remote
//! model, a test, a resumed journal), so the registry checks them before a
//! call. Messages name the argument the way the model wrote it.
//!
//! It reads schemas leniently (keywords outside this list are ignored, not
//! refused as [`crate::JsonSchema::compile`] does) because its messages are
//! for the model: every problem at once, each naming the argument.

use serde_json::Value;

/// Why arguments do not match a tool's schema.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", .problems.join("; "))]
pub struct ArgsError {
    /// One message per problem, each naming the argument.
    pub problems: Vec<String>,
}

/// Checks `value` against `schema`, collecting every problem.
pub fn validate(schema: &Value, value: &Value) -> Result<(), ArgsError> {
    let mut problems = Vec::new();
    check(schema, value, "", &mut problems);
    if problems.is_empty() {
        Ok(())
    } else {
        Err(ArgsError { problems })
    }
}

fn describe(path: &str) -> String {
    if path.is_empty() {
        "the arguments".to_string()
    } else {
        format!("`{path}`")
    }
}

fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "an integer",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn check(schema: &Value, value: &Value, path: &str, problems: &mut Vec<String>) {
    let Some(schema) = schema.as_object() else {
        return;
    };
    if let Some(ty) = schema.get("type").and_then(Value::as_str) {
        let (ok, article) = match ty {
            "object" => (value.is_object(), "an object"),
            "string" => (value.is_string(), "a string"),
            "integer" => (value.is_i64() || value.is_u64(), "an integer"),
            "number" => (value.is_number(), "a number"),
            "boolean" => (value.is_boolean(), "a boolean"),
            "array" => (value.is_array(), "an array"),
            "null" => (value.is_null(), "null"),
            _ => (true, ""),
        };
        if !ok {
            problems.push(format!(
                "{} must be {article}, not {}",
                describe(path),
                type_name(value)
            ));
            return;
        }
    }
    if let Some(options) = schema.get("enum").and_then(Value::as_array) {
        if !options.contains(value) {
            let list: Vec<String> = options.iter().map(Value::to_string).collect();
            problems.push(format!(
                "{} must be one of {}, not {value}",
                describe(path),
                list.join(", ")
            ));
        }
    }
    if let Some(n) = value.as_f64() {
        if let Some(min) = schema.get("minimum").and_then(Value::as_f64) {
            if n < min {
                problems.push(format!(
                    "{} must be at least {min}, not {n}",
                    describe(path)
                ));
            }
        }
        if let Some(max) = schema.get("maximum").and_then(Value::as_f64) {
            if n > max {
                problems.push(format!("{} must be at most {max}, not {n}", describe(path)));
            }
        }
    }
    match value {
        Value::Object(map) => {
            let props = schema.get("properties").and_then(Value::as_object);
            if let Some(required) = schema.get("required").and_then(Value::as_array) {
                for name in required.iter().filter_map(Value::as_str) {
                    if !map.contains_key(name) {
                        problems.push(format!("{} is required", describe(&join(path, name))));
                    }
                }
            }
            let closed = schema.get("additionalProperties") == Some(&Value::Bool(false));
            for (name, v) in map {
                let sub = join(path, name);
                match props.and_then(|p| p.get(name)) {
                    Some(s) => check(s, v, &sub, problems),
                    None if closed => {
                        let known: Vec<&str> = props
                            .map(|p| p.keys().map(String::as_str).collect())
                            .unwrap_or_default();
                        problems.push(format!(
                            "{} is not an argument of this tool (it takes: {})",
                            describe(&sub),
                            known.join(", ")
                        ));
                    }
                    None => {}
                }
            }
        }
        Value::Array(items) => {
            if let Some(item_schema) = schema.get("items") {
                for (i, item) in items.iter().enumerate() {
                    check(item_schema, item, &format!("{path}[{i}]"), problems);
                }
            }
        }
        _ => {}
    }
}

fn join(path: &str, name: &str) -> String {
    if path.is_empty() {
        name.to_string()
    } else {
        format!("{path}.{name}")
    }
}

/// Builds the argument schema of a tool: an object with these properties,
/// these required, and nothing else.
pub fn object_schema(properties: Value, required: &[&str]) -> Value {
    serde_json::json!({
        "type": "object",
        "properties": properties,
        "required": required,
        "additionalProperties": false,
    })
}
