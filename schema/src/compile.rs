//! Reads a JSON Schema into a small graph of checked nodes that both the
//! grammar writer and the validator walk, so the two cannot disagree about
//! what a schema means. Everything outside the supported subset is refused
//! here, with the pointer of the schema object that holds it.

use std::collections::HashMap;

use serde_json::{Map, Value};

use super::format::Format;
use super::keywords::{count, integer_keywords, string_keywords};
use super::SchemaError;

/// Index of a node in the compiled graph.
pub(crate) type NodeId = usize;

/// One compiled (sub)schema.
#[derive(Debug, Clone)]
pub(crate) struct Node {
    /// JSON pointer of the schema, as a URI fragment (`#/properties/a`).
    pub path: String,
    pub kind: Kind,
}

#[derive(Debug, Clone)]
pub(crate) enum Kind {
    /// Reserved while its schema is being read; never left after `compile`.
    Pending,
    /// Any JSON value.
    Any,
    /// The same value as another node (a `$ref`).
    Alias(NodeId),
    /// One of `values`, each also checked against `rest` (the sibling keywords).
    Enum {
        values: Vec<Value>,
        rest: NodeId,
    },
    Typed(Typed),
    AnyOf {
        alts: Vec<NodeId>,
        exactly_one: bool,
    },
}

/// JSON types, ordered so that sorting gives a stable grammar.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Ty {
    Null,
    Boolean,
    Object,
    Array,
    String,
    Number,
    Integer,
}

impl Ty {
    pub(super) fn name(self) -> &'static str {
        match self {
            Ty::Null => "null",
            Ty::Boolean => "boolean",
            Ty::Object => "object",
            Ty::Array => "array",
            Ty::String => "string",
            Ty::Number => "number",
            Ty::Integer => "integer",
        }
    }

    fn parse(name: &str) -> Option<Ty> {
        [
            Ty::Null,
            Ty::Boolean,
            Ty::Object,
            Ty::Array,
            Ty::String,
            Ty::Number,
            Ty::Integer,
        ]
        .into_iter()
        .find(|ty| ty.name() == name)
    }
}

/// A schema with `type` (given or inferred) and its type-specific keywords.
#[derive(Debug, Clone, Default)]
pub(crate) struct Typed {
    /// Sorted, deduplicated; never both `Number` and `Integer`.
    pub types: Vec<Ty>,
    pub properties: Vec<Property>,
    /// Schema of keys not in `properties`; `None` forbids them.
    pub extra: Option<NodeId>,
    pub prefix: Vec<NodeId>,
    /// Schema of items after `prefix`; `None` forbids them.
    pub items: Option<NodeId>,
    pub min_items: u64,
    pub max_items: Option<u64>,
    pub min_length: u64,
    pub max_length: Option<u64>,
    pub format: Option<Format>,
    /// Inclusive integer bounds, as written (the grammar clamps further).
    pub minimum: Option<i64>,
    pub maximum: Option<i64>,
}

#[derive(Debug, Clone)]
pub(crate) struct Property {
    pub name: String,
    pub node: NodeId,
    pub required: bool,
}

const ANNOTATIONS: &[&str] = &[
    "title",
    "description",
    "$schema",
    "$id",
    "$comment",
    "default",
    "examples",
    "deprecated",
    "readOnly",
    "writeOnly",
    "$defs",
    "definitions",
];
const OBJECT_KEYWORDS: &[&str] = &["properties", "required", "additionalProperties"];
const ARRAY_KEYWORDS: &[&str] = &["items", "prefixItems", "minItems", "maxItems"];
const STRING_KEYWORDS: &[&str] = &["minLength", "maxLength", "format"];
const NUMBER_KEYWORDS: &[&str] = &["minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"];
const OTHER_KEYWORDS: &[&str] = &["type", "enum", "const", "anyOf", "oneOf", "$ref"];

/// Reads `schema`; returns the nodes and the root's id.
pub(crate) fn compile(schema: &Value) -> Result<(Vec<Node>, NodeId), SchemaError> {
    let mut compiler = Compiler {
        root: schema,
        nodes: Vec::new(),
        by_path: HashMap::new(),
        one_ofs: Vec::new(),
    };
    let root = compiler.compile(schema, "#")?;
    check_cycles(&compiler.nodes)?;
    for id in compiler.one_ofs {
        super::disjoint::check_one_of(&compiler.nodes, id)?;
    }
    Ok((compiler.nodes, root))
}

struct Compiler<'a> {
    root: &'a Value,
    nodes: Vec<Node>,
    by_path: HashMap<String, NodeId>,
    one_ofs: Vec<NodeId>,
}

/// `path` extended by one JSON pointer segment.
pub(crate) fn child(path: &str, segment: &str) -> String {
    format!("{path}/{}", segment.replace('~', "~0").replace('/', "~1"))
}

pub(crate) fn invalid(path: &str, keyword: &str, reason: impl Into<String>) -> SchemaError {
    SchemaError::Invalid {
        pointer: path.to_owned(),
        keyword: keyword.to_owned(),
        reason: reason.into(),
    }
}

pub(crate) fn unsupported_use(path: &str, keyword: &str, reason: impl Into<String>) -> SchemaError {
    SchemaError::UnsupportedUse {
        pointer: path.to_owned(),
        keyword: keyword.to_owned(),
        reason: reason.into(),
    }
}

pub(crate) fn unsatisfiable(path: &str, reason: impl Into<String>) -> SchemaError {
    SchemaError::Unsatisfiable {
        pointer: path.to_owned(),
        reason: reason.into(),
    }
}

impl Compiler<'_> {
    fn push(&mut self, path: &str, kind: Kind) -> NodeId {
        self.nodes.push(Node {
            path: path.to_owned(),
            kind,
        });
        self.nodes.len() - 1
    }

    /// Compiles the schema at `path` once; a second visit (a `$ref` back to
    /// it) gets the same node, which is what makes recursion terminate.
    fn compile(&mut self, value: &Value, path: &str) -> Result<NodeId, SchemaError> {
        if let Some(&id) = self.by_path.get(path) {
            return Ok(id);
        }
        let id = self.push(path, Kind::Pending);
        self.by_path.insert(path.to_owned(), id);
        let kind = self.compile_kind(value, path)?;
        if matches!(
            kind,
            Kind::AnyOf {
                exactly_one: true,
                ..
            }
        ) {
            self.one_ofs.push(id);
        }
        self.nodes[id].kind = kind;
        Ok(id)
    }

    fn compile_kind(&mut self, value: &Value, path: &str) -> Result<Kind, SchemaError> {
        let map = match value {
            Value::Bool(true) => return Ok(Kind::Any),
            Value::Bool(false) => {
                return Err(unsupported_use(
                    path,
                    "false",
                    "the `false` schema is supported only as `items` or `additionalProperties`",
                ))
            }
            Value::Object(map) => map,
            _ => return Err(invalid(path, "", "a schema must be an object or a boolean")),
        };
        let known = |key: &str| {
            [
                ANNOTATIONS,
                OBJECT_KEYWORDS,
                ARRAY_KEYWORDS,
                STRING_KEYWORDS,
                NUMBER_KEYWORDS,
                OTHER_KEYWORDS,
            ]
            .iter()
            .any(|list| list.contains(&key))
        };
        if let Some(key) = map.keys().find(|key| !known(key)) {
            return Err(SchemaError::Unsupported {
                pointer: path.to_owned(),
                keyword: key.clone(),
            });
        }
        let assertions = |except: &str| {
            map.keys()
                .find(|key| !ANNOTATIONS.contains(&key.as_str()) && key.as_str() != except)
                .cloned()
        };
        if let Some(reference) = map.get("$ref") {
            if let Some(other) = assertions("$ref") {
                return Err(unsupported_use(
                    path,
                    &other,
                    "keywords next to `$ref` are not supported",
                ));
            }
            return self.compile_ref(reference, path).map(Kind::Alias);
        }
        for keyword in ["anyOf", "oneOf"] {
            if let Some(alts) = map.get(keyword) {
                if let Some(other) = assertions(keyword) {
                    return Err(unsupported_use(
                        path,
                        &other,
                        format!("keywords next to `{keyword}` are not supported"),
                    ));
                }
                let Some(alts) = alts.as_array().filter(|alts| !alts.is_empty()) else {
                    return Err(invalid(
                        path,
                        keyword,
                        "must be a non-empty array of schemas",
                    ));
                };
                let base = child(path, keyword);
                let alts = alts
                    .iter()
                    .enumerate()
                    .map(|(i, alt)| self.compile(alt, &child(&base, &i.to_string())))
                    .collect::<Result<Vec<_>, _>>()?;
                return Ok(Kind::AnyOf {
                    alts,
                    exactly_one: keyword == "oneOf",
                });
            }
        }
        let values = match (map.get("enum"), map.get("const")) {
            (Some(_), Some(_)) => {
                return Err(unsupported_use(
                    path,
                    "const",
                    "`enum` and `const` together",
                ))
            }
            (Some(Value::Array(values)), None) if !values.is_empty() => Some(values.clone()),
            (Some(_), None) => return Err(invalid(path, "enum", "must be a non-empty array")),
            (None, Some(value)) => Some(vec![value.clone()]),
            (None, None) => None,
        };
        let rest = self.compile_typed(map, path)?;
        match values {
            Some(values) => {
                let rest = self.push(path, rest);
                Ok(Kind::Enum { values, rest })
            }
            None => Ok(rest),
        }
    }

    fn compile_ref(&mut self, reference: &Value, path: &str) -> Result<NodeId, SchemaError> {
        let unresolved = |reason: &str| SchemaError::UnresolvedRef {
            pointer: path.to_owned(),
            reference: reference.as_str().unwrap_or_default().to_owned(),
            reason: reason.to_owned(),
        };
        let Some(text) = reference.as_str() else {
            return Err(invalid(path, "$ref", "must be a string"));
        };
        let Some(fragment) = text.strip_prefix('#') else {
            return Err(unresolved(
                "only references inside this schema (`#/...`) are supported",
            ));
        };
        if !fragment.is_empty() && !fragment.starts_with('/') {
            return Err(unresolved(
                "anchors are not supported; use a JSON pointer such as `#/$defs/name`",
            ));
        }
        let Some(target) = self.root.pointer(fragment) else {
            return Err(unresolved("nothing at that pointer"));
        };
        self.compile(target, text)
    }

    fn compile_typed(&mut self, map: &Map<String, Value>, path: &str) -> Result<Kind, SchemaError> {
        let mut types = match map.get("type") {
            None => infer_types(map),
            Some(Value::String(name)) => vec![parse_type(path, name)?],
            Some(Value::Array(names)) if !names.is_empty() => names
                .iter()
                .map(|name| match name {
                    Value::String(name) => parse_type(path, name),
                    _ => Err(invalid(path, "type", "must list type names")),
                })
                .collect::<Result<_, _>>()?,
            Some(_) => {
                return Err(invalid(
                    path,
                    "type",
                    "must be a type name or a non-empty list of them",
                ))
            }
        };
        if types.is_empty() {
            return Ok(Kind::Any);
        }
        types.sort();
        types.dedup();
        if types.contains(&Ty::Number) {
            types.retain(|ty| *ty != Ty::Integer);
        }
        let has = |ty: Ty| types.contains(&ty);
        for (keywords, ty) in [
            (OBJECT_KEYWORDS, Ty::Object),
            (ARRAY_KEYWORDS, Ty::Array),
            (STRING_KEYWORDS, Ty::String),
        ] {
            if let Some(keyword) = keywords
                .iter()
                .find(|k| map.contains_key(**k))
                .filter(|_| !has(ty))
            {
                return Err(unsupported_use(
                    path,
                    keyword,
                    format!(
                        "it applies to {} values but `type` does not allow them",
                        ty.name()
                    ),
                ));
            }
        }
        if let Some(keyword) = NUMBER_KEYWORDS.iter().find(|k| map.contains_key(**k)) {
            if has(Ty::Number) || !has(Ty::Integer) {
                return Err(unsupported_use(
                    path,
                    keyword,
                    "numeric bounds are enforced only for `\"type\": \"integer\"`",
                ));
            }
        }
        let mut typed = Typed {
            types,
            ..Typed::default()
        };
        if typed.types.contains(&Ty::Object) {
            self.object_keywords(map, path, &mut typed)?;
        }
        if typed.types.contains(&Ty::Array) {
            self.array_keywords(map, path, &mut typed)?;
        }
        string_keywords(map, path, &mut typed)?;
        integer_keywords(map, path, &mut typed)?;
        Ok(Kind::Typed(typed))
    }

    fn object_keywords(
        &mut self,
        map: &Map<String, Value>,
        path: &str,
        typed: &mut Typed,
    ) -> Result<(), SchemaError> {
        let required: Vec<&str> = match map.get("required") {
            None => Vec::new(),
            Some(Value::Array(names)) => names
                .iter()
                .map(|name| {
                    name.as_str()
                        .ok_or_else(|| invalid(path, "required", "must list property names"))
                })
                .collect::<Result<_, _>>()?,
            Some(_) => {
                return Err(invalid(
                    path,
                    "required",
                    "must be an array of property names",
                ))
            }
        };
        if let Some(dup) = required
            .iter()
            .enumerate()
            .find(|(i, name)| required[..*i].contains(name))
        {
            return Err(invalid(
                path,
                "required",
                format!("lists \"{}\" twice", dup.1),
            ));
        }
        let properties = match map.get("properties") {
            None => None,
            Some(Value::Object(properties)) => Some(properties),
            Some(_) => return Err(invalid(path, "properties", "must be an object of schemas")),
        };
        let listed = properties.is_some();
        let extra_path = child(path, "additionalProperties");
        typed.extra = match map.get("additionalProperties") {
            None if listed => None,
            None | Some(Value::Bool(true)) => Some(self.push(&extra_path, Kind::Any)),
            Some(Value::Bool(false)) => None,
            Some(schema) => Some(self.compile(schema, &extra_path)?),
        };
        let base = child(path, "properties");
        for (name, schema) in properties.into_iter().flatten() {
            let node = self.compile(schema, &child(&base, name))?;
            typed.properties.push(Property {
                name: name.clone(),
                node,
                required: required.contains(&name.as_str()),
            });
        }
        for name in required {
            if typed.properties.iter().any(|p| p.name == name) {
                continue;
            }
            let Some(node) = typed.extra else {
                return Err(unsatisfiable(
                    path,
                    format!("\"{name}\" is required but not in `properties`, and other properties are not allowed"),
                ));
            };
            typed.properties.push(Property {
                name: name.to_owned(),
                node,
                required: true,
            });
        }
        Ok(())
    }

    fn array_keywords(
        &mut self,
        map: &Map<String, Value>,
        path: &str,
        typed: &mut Typed,
    ) -> Result<(), SchemaError> {
        if let Some(prefix) = map.get("prefixItems") {
            let Some(prefix) = prefix.as_array() else {
                return Err(invalid(path, "prefixItems", "must be an array of schemas"));
            };
            let base = child(path, "prefixItems");
            for (i, schema) in prefix.iter().enumerate() {
                typed
                    .prefix
                    .push(self.compile(schema, &child(&base, &i.to_string()))?);
            }
        }
        let items_path = child(path, "items");
        typed.items = match map.get("items") {
            None | Some(Value::Bool(true)) => Some(self.push(&items_path, Kind::Any)),
            Some(Value::Bool(false)) => None,
            Some(Value::Array(_)) => {
                return Err(unsupported_use(
                    path,
                    "items",
                    "the array form of `items` (drafts 4–2019); use `prefixItems`",
                ))
            }
            Some(schema) => Some(self.compile(schema, &items_path)?),
        };
        typed.min_items = count(map, path, "minItems")?.unwrap_or(0);
        typed.max_items = count(map, path, "maxItems")?;
        if typed.items.is_none() {
            let tuple = typed.prefix.len() as u64;
            typed.max_items = Some(typed.max_items.map_or(tuple, |max| max.min(tuple)));
        }
        if typed.max_items.is_some_and(|max| max < typed.min_items) {
            return Err(unsatisfiable(
                path,
                "`minItems` is more than the items allowed",
            ));
        }
        Ok(())
    }
}

fn parse_type(path: &str, name: &str) -> Result<Ty, SchemaError> {
    Ty::parse(name)
        .ok_or_else(|| invalid(path, "type", format!("names an unknown type \"{name}\"")))
}

/// The types a schema without `type` is read as: those its keywords apply to.
fn infer_types(map: &Map<String, Value>) -> Vec<Ty> {
    let uses = |keywords: &[&str]| keywords.iter().any(|k| map.contains_key(*k));
    let mut types = Vec::new();
    for (keywords, ty) in [
        (OBJECT_KEYWORDS, Ty::Object),
        (ARRAY_KEYWORDS, Ty::Array),
        (STRING_KEYWORDS, Ty::String),
        (NUMBER_KEYWORDS, Ty::Number),
    ] {
        if uses(keywords) {
            types.push(ty);
        }
    }
    types
}

/// Refuses cycles of `$ref`/`anyOf`/`oneOf` that reach the same instance
/// again without entering an object or array.
fn check_cycles(nodes: &[Node]) -> Result<(), SchemaError> {
    // 0: unvisited, 1: on the current path, 2: done.
    let mut state = vec![0u8; nodes.len()];
    fn visit(nodes: &[Node], id: NodeId, state: &mut [u8]) -> Result<(), SchemaError> {
        match state[id] {
            1 => {
                return Err(SchemaError::RefCycle {
                    pointer: nodes[id].path.clone(),
                })
            }
            2 => return Ok(()),
            _ => {}
        }
        state[id] = 1;
        let next: Vec<NodeId> = match &nodes[id].kind {
            Kind::Alias(target) => vec![*target],
            Kind::AnyOf { alts, .. } => alts.clone(),
            Kind::Enum { rest, .. } => vec![*rest],
            Kind::Pending | Kind::Any | Kind::Typed(_) => Vec::new(),
        };
        for next in next {
            visit(nodes, next, state)?;
        }
        state[id] = 2;
        Ok(())
    }
    (0..nodes.len()).try_for_each(|id| visit(nodes, id, &mut state))
}
