//! Checks a JSON value against a compiled schema: exactly the supported
//! subset, with the same readings the grammar uses (see the module
//! documentation of [`crate`]), so model output can be re-checked and
//! tests can check every grammar sample.

use serde_json::Value;

use super::compile::{child, Kind, Node, NodeId, Ty, Typed};

/// How an instance breaks its schema.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum Violation {
    /// The value's JSON type is not one of those allowed.
    #[error("expected {expected}, found {found}")]
    WrongType {
        /// The allowed types, `|`-separated.
        expected: String,
        /// The value's type.
        found: &'static str,
    },
    /// The value is not one of the `enum`/`const` values.
    #[error("value is not one of the allowed `enum`/`const` values")]
    NotInEnum,
    /// A required property is absent.
    #[error("required property \"{name}\" is missing")]
    MissingProperty {
        /// The property.
        name: String,
    },
    /// A property the schema does not allow.
    #[error("property \"{name}\" is not allowed")]
    UnexpectedProperty {
        /// The property.
        name: String,
    },
    /// Fewer array items than `minItems`.
    #[error("{found} items, fewer than the minimum {min}")]
    TooFewItems {
        /// `minItems`.
        min: u64,
        /// The array's length.
        found: usize,
    },
    /// More array items than allowed.
    #[error("{found} items, more than the maximum {max}")]
    TooManyItems {
        /// `maxItems`, or the tuple length when `items` is `false`.
        max: u64,
        /// The array's length.
        found: usize,
    },
    /// A string shorter than `minLength` characters.
    #[error("{found} characters, fewer than the minimum {min}")]
    TooShort {
        /// `minLength`.
        min: u64,
        /// The string's length in characters.
        found: usize,
    },
    /// A string longer than `maxLength` characters.
    #[error("{found} characters, more than the maximum {max}")]
    TooLong {
        /// `maxLength`.
        max: u64,
        /// The string's length in characters.
        found: usize,
    },
    /// A string not in its `format`.
    #[error("not a valid `{format}` string")]
    Format {
        /// The format's name.
        format: &'static str,
    },
    /// An integer outside `minimum`/`maximum` (inclusive bounds shown).
    #[error("{value} is outside [{}, {}]", fmt_bound(*.min, "-inf"), fmt_bound(*.max, "inf"))]
    OutOfRange {
        /// The value as written.
        value: String,
        /// The smallest allowed integer.
        min: Option<i64>,
        /// The largest allowed integer.
        max: Option<i64>,
    },
    /// No `anyOf`/`oneOf` alternative matches.
    #[error("matches none of the {count} alternatives")]
    NoAlternativeMatched {
        /// How many alternatives there are.
        count: usize,
    },
    /// Several `oneOf` alternatives match.
    #[error("matches `oneOf` alternatives {matched:?}, not exactly one")]
    SeveralAlternativesMatched {
        /// Indices of the matching alternatives.
        matched: Vec<usize>,
    },
}

fn fmt_bound(bound: Option<i64>, none: &str) -> String {
    bound.map_or_else(|| none.to_owned(), |b| b.to_string())
}

/// Where an instance breaks its schema, and how.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("value at {instance_pointer} does not match the schema at {schema_pointer}: {violation}")]
pub struct SchemaViolation {
    /// JSON pointer of the offending value in the instance (`#` for the root).
    pub instance_pointer: String,
    /// JSON pointer of the schema it breaks.
    pub schema_pointer: String,
    /// What is wrong.
    pub violation: Violation,
}

pub(crate) fn validate(
    nodes: &[Node],
    root: NodeId,
    instance: &Value,
) -> Result<(), SchemaViolation> {
    Validator { nodes }.check(root, instance, "#")
}

/// Whether `instance` matches node `id`.
pub(crate) fn matches(nodes: &[Node], id: NodeId, instance: &Value) -> bool {
    Validator { nodes }.check(id, instance, "#").is_ok()
}

struct Validator<'a> {
    nodes: &'a [Node],
}

fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Object(_) => "object",
        Value::Array(_) => "array",
        Value::String(_) => "string",
        Value::Number(_) => "number",
    }
}

/// JSON equality, where `1` and `1.0` are the same number.
pub(crate) fn json_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            match (x.as_i64(), y.as_i64(), x.as_u64(), y.as_u64()) {
                (Some(x), Some(y), _, _) => x == y,
                (_, _, Some(x), Some(y)) => x == y,
                _ => x.as_f64() == y.as_f64(),
            }
        }
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(x, y)| json_eq(x, y))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| json_eq(v, w)))
        }
        _ => a == b,
    }
}

/// The integer value of `number`, if it is one (JSON Schema counts `2.0`).
fn integer_value(number: &serde_json::Number) -> Option<i128> {
    if let Some(i) = number.as_i64() {
        return Some(i128::from(i));
    }
    if let Some(u) = number.as_u64() {
        return Some(i128::from(u));
    }
    number
        .as_f64()
        .filter(|f| f.fract() == 0.0 && f.abs() < 1e36)
        .map(|f| f as i128)
}

impl Validator<'_> {
    fn check(&self, id: NodeId, instance: &Value, at: &str) -> Result<(), SchemaViolation> {
        let node = &self.nodes[id];
        let fail = |violation| {
            Err(SchemaViolation {
                instance_pointer: at.to_owned(),
                schema_pointer: node.path.clone(),
                violation,
            })
        };
        match &node.kind {
            Kind::Pending | Kind::Any => Ok(()),
            Kind::Alias(target) => self.check(*target, instance, at),
            Kind::Enum { values, rest } => {
                if !values.iter().any(|v| json_eq(v, instance)) {
                    return fail(Violation::NotInEnum);
                }
                self.check(*rest, instance, at)
            }
            Kind::AnyOf { alts, exactly_one } => {
                let mut matched = Vec::new();
                for (i, alt) in alts.iter().enumerate() {
                    if self.check(*alt, instance, at).is_ok() {
                        matched.push(i);
                        if !exactly_one {
                            return Ok(());
                        }
                    }
                }
                match matched.len() {
                    0 => fail(Violation::NoAlternativeMatched { count: alts.len() }),
                    1 => Ok(()),
                    _ => fail(Violation::SeveralAlternativesMatched { matched }),
                }
            }
            Kind::Typed(typed) => match self.check_typed(typed, instance, at) {
                Err(Found::Here(violation)) => fail(violation),
                Err(Found::Inside(violation)) => Err(violation),
                Ok(()) => Ok(()),
            },
        }
    }

    fn check_typed(&self, typed: &Typed, instance: &Value, at: &str) -> Result<(), Found> {
        let allows = |ty: Ty| typed.types.contains(&ty);
        let wrong_type = || {
            let expected = typed
                .types
                .iter()
                .map(|ty| ty.name())
                .collect::<Vec<_>>()
                .join(" | ");
            Found::Here(Violation::WrongType {
                expected,
                found: type_name(instance),
            })
        };
        match instance {
            Value::Null if allows(Ty::Null) => Ok(()),
            Value::Bool(_) if allows(Ty::Boolean) => Ok(()),
            Value::Number(_) if allows(Ty::Number) => Ok(()),
            Value::Number(number) if allows(Ty::Integer) => {
                let Some(value) = integer_value(number) else {
                    return Err(wrong_type());
                };
                if typed.minimum.is_some_and(|min| value < i128::from(min))
                    || typed.maximum.is_some_and(|max| value > i128::from(max))
                {
                    return Err(Found::Here(Violation::OutOfRange {
                        value: number.to_string(),
                        min: typed.minimum,
                        max: typed.maximum,
                    }));
                }
                Ok(())
            }
            Value::String(text) if allows(Ty::String) => {
                let found = text.chars().count();
                if (found as u64) < typed.min_length {
                    return Err(Found::Here(Violation::TooShort {
                        min: typed.min_length,
                        found,
                    }));
                }
                if let Some(max) = typed.max_length.filter(|max| found as u64 > *max) {
                    return Err(Found::Here(Violation::TooLong { max, found }));
                }
                match typed.format {
                    Some(format) if !format.matches(text) => Err(Found::Here(Violation::Format {
                        format: format.name(),
                    })),
                    _ => Ok(()),
                }
            }
            Value::Array(items) if allows(Ty::Array) => self.check_array(typed, items, at),
            Value::Object(map) if allows(Ty::Object) => self.check_object(typed, map, at),
            _ => Err(wrong_type()),
        }
    }

    fn check_array(&self, typed: &Typed, items: &[Value], at: &str) -> Result<(), Found> {
        let found = items.len();
        if (found as u64) < typed.min_items {
            return Err(Found::Here(Violation::TooFewItems {
                min: typed.min_items,
                found,
            }));
        }
        if let Some(max) = typed.max_items.filter(|max| found as u64 > *max) {
            return Err(Found::Here(Violation::TooManyItems { max, found }));
        }
        for (i, item) in items.iter().enumerate() {
            // max_items already caps tuples whose `items` is false.
            if let Some(schema) = typed.prefix.get(i).copied().or(typed.items) {
                self.check(schema, item, &child(at, &i.to_string()))
                    .map_err(Found::Inside)?;
            }
        }
        Ok(())
    }

    fn check_object(
        &self,
        typed: &Typed,
        map: &serde_json::Map<String, Value>,
        at: &str,
    ) -> Result<(), Found> {
        for property in &typed.properties {
            match map.get(&property.name) {
                Some(value) => self
                    .check(property.node, value, &child(at, &property.name))
                    .map_err(Found::Inside)?,
                None if property.required => {
                    return Err(Found::Here(Violation::MissingProperty {
                        name: property.name.clone(),
                    }))
                }
                None => {}
            }
        }
        for (name, value) in map {
            if typed.properties.iter().any(|p| &p.name == name) {
                continue;
            }
            match typed.extra {
                Some(schema) => self
                    .check(schema, value, &child(at, name))
                    .map_err(Found::Inside)?,
                None => {
                    return Err(Found::Here(Violation::UnexpectedProperty {
                        name: name.clone(),
                    }))
                }
            }
        }
        Ok(())
    }
}

/// A violation of the current schema, or one already located deeper.
enum Found {
    Here(Violation),
    Inside(SchemaViolation),
}
