//! troupe-schema: the JSON Schema subset troupe reads, in one place. Its
//! users: troupe-inference compiles constrained output to a grammar,
//! troupe-tools checks tool arguments ([`args`]), troupe-mcp cuts a
//! server's input schema down to the subset ([`sanitize`]).
//!
//! # Layout
//! - this module: JSON Schema → GBNF grammar for llama.cpp ([`JsonSchema`],
//!   [`json_schema_to_gbnf`]) and a validator for the same subset
//!   ([`validate`]); `compile` reads a schema into nodes, `gbnf` writes
//!   them as rules, `validate` checks instances against the nodes,
//!   `keywords`/`format`/`int_range`/`disjoint` handle the scalar keywords,
//!   the formats, integer ranges and `oneOf` disjointness.
//! - [`args`]: tool arguments checked before a call, every problem
//!   collected, each message naming the argument as the model wrote it.
//! - [`sanitize`]: an MCP server's input schema with the keywords the
//!   grammar cannot enforce dropped.
//!
//! troupe constrains model output (worker actions, plans, OpenAI
//! `response_format: json_schema`, tool calls) to a JSON Schema. The output
//! must parse and validate even when it comes from a model with random
//! weights, so the grammar enforces everything the schema says, and a schema
//! construct the grammar cannot enforce is a [`SchemaError`], never a silent
//! loosening. The grammar may be *narrower* than the schema (for example it
//! bounds whitespace and number lengths), never wider.
//!
//! # Supported subset
//!
//! | keyword | grammar |
//! |---|---|
//! | `type` (one name or a list) | alternation of the listed types; `number` includes `integer` |
//! | `properties`, `required` | properties in declared order; required ones always, optional ones may be left out |
//! | `additionalProperties` | `false` → only listed keys; schema or `true` → extra keys after the listed ones |
//! | `items`, `prefixItems`, `minItems`, `maxItems` | bounded repetition (`items: false` closes a tuple) |
//! | `minLength`, `maxLength` | bounded repetition of decoded characters (an escape is one character) |
//! | `format`: `date`, `date-time`, `uuid` | exact RFC 3339 / UUID grammars (see below) |
//! | `minimum`, `maximum`, `exclusiveMinimum`, `exclusiveMaximum` | integers only: a digit-range grammar |
//! | `enum`, `const` (any JSON values) | the canonical JSON text of each value that also satisfies the sibling keywords |
//! | `anyOf` | alternation |
//! | `oneOf` | alternation, accepted only when no two alternatives can match one value (see below) |
//! | `$ref` to a local pointer (`#/$defs/..`, `#/definitions/..`, `#`) | a rule; recursion becomes recursive rules |
//! | `title`, `description`, `$schema`, `$id`, `$comment`, `default`, `examples`, `deprecated`, `readOnly`, `writeOnly`, `$defs`, `definitions` | annotations, ignored |
//!
//! Everything else (`allOf`, `not`, `if`/`then`/`else`, `patternProperties`,
//! `pattern`, `minProperties`, `uniqueItems`, `multipleOf`, `contains`, other
//! formats, external `$ref`, unknown keywords, ...) is
//! [`SchemaError::Unsupported`]. Supported keywords used in ways the grammar
//! cannot enforce are [`SchemaError::UnsupportedUse`]: a keyword for a type
//! that `type` excludes, `minimum` and friends on `number`, integer bounds
//! outside `i64`, `anyOf`/`oneOf`/`$ref` next to assertion keywords,
//! overlapping `oneOf`, the array form of `items`, `false` as a subschema
//! other than `items`/`additionalProperties`, `format` with length bounds,
//! and repetition counts above [`MAX_REPETITION`].
//!
//! # Choices the validator shares with the grammar
//!
//! - `additionalProperties` absent: when `properties` is given it means
//!   `false` (only the listed keys); without `properties` (a bare
//!   `{"type": "object"}`, or only `required`) any other keys are allowed.
//! - A `required` name missing from `properties` is emitted with the
//!   `additionalProperties` schema (an error when that is `false`).
//! - A schema without `type` whose keywords belong to one kind of value (say
//!   `properties`) is read as that type, as llama.cpp's own converter does.
//! - `oneOf`: a grammar cannot count matches, so `oneOf` is accepted only when
//!   the alternatives are provably disjoint (different types, disjoint
//!   `enum`/`const` values, or objects told apart by a required property);
//!   [`validate`] checks exactly-one all the same.
//! - Formats: `date` is `YYYY-MM-DD` with real month lengths and leap years;
//!   `date-time` is that, `T`, `HH:MM:SS`, an optional 1–9 digit fraction and
//!   `Z` or `±HH:MM` (upper case `T`/`Z`, no leap second); `uuid` is
//!   8-4-4-4-12 hex digits of either case.
//!
//! # Deliberate narrowing
//!
//! At most one newline plus 20 spaces/tabs between tokens, so a random model
//! cannot pad forever; integers have at most 16 digits, fractions 16 and
//! exponents 2 (so every number fits an `f64`); `\u` escapes never name a
//! lone surrogate (serde_json would refuse it); keys accepted by
//! `additionalProperties` are written without escapes, so that the grammar
//! can keep them from repeating a listed property. It cannot keep two extra
//! keys from repeating each other: JSON parsers keep the last, which still
//! validates.

pub mod args;
mod compile;
mod disjoint;
mod format;
mod gbnf;
mod int_range;
mod keywords;
pub mod sanitize;
mod validate;

use serde_json::Value;

pub use validate::{SchemaViolation, Violation};

/// The largest `minLength`/`maxLength`/`minItems`/`maxItems` accepted:
/// llama.cpp's grammar parser refuses larger minimum counts and silently
/// drops larger maximum counts, which would loosen the grammar.
pub const MAX_REPETITION: u64 = 2000;

/// Why a JSON Schema cannot be turned into a grammar.
///
/// Every variant names the JSON pointer (as a URI fragment, `#` for the root)
/// of the schema object that holds the offending keyword.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SchemaError {
    /// A keyword outside the supported subset.
    #[error("unsupported JSON Schema keyword `{keyword}` at {pointer}")]
    Unsupported {
        /// Where the schema object holding the keyword is.
        pointer: String,
        /// The keyword.
        keyword: String,
    },
    /// A supported keyword used in a way the grammar cannot enforce.
    #[error("unsupported use of `{keyword}` at {pointer}: {reason}")]
    UnsupportedUse {
        /// Where the schema object holding the keyword is.
        pointer: String,
        /// The keyword.
        keyword: String,
        /// What about this use cannot be enforced.
        reason: String,
    },
    /// A keyword whose value is not what JSON Schema allows.
    #[error("invalid JSON Schema at {pointer}: `{keyword}` {reason}")]
    Invalid {
        /// Where the schema object holding the keyword is.
        pointer: String,
        /// The keyword (empty when the schema itself has the wrong shape).
        keyword: String,
        /// What is wrong with its value.
        reason: String,
    },
    /// A `$ref` that is not a local JSON pointer, or points at nothing.
    #[error("cannot resolve `$ref` \"{reference}\" at {pointer}: {reason}")]
    UnresolvedRef {
        /// Where the schema object holding the `$ref` is.
        pointer: String,
        /// The reference as written.
        reference: String,
        /// Why it cannot be followed.
        reason: String,
    },
    /// A schema that no value can satisfy (within the grammar's bounds).
    #[error("schema at {pointer} can match no value: {reason}")]
    Unsatisfiable {
        /// Where the schema is.
        pointer: String,
        /// Why nothing matches.
        reason: String,
    },
    /// A `$ref`/`anyOf` cycle that never enters an object or array: it would
    /// be a left-recursive grammar and an endless validation.
    #[error("`$ref` cycle through {pointer} never enters an object or array")]
    RefCycle {
        /// A schema on the cycle.
        pointer: String,
    },
}

/// Why [`validate`] failed: the schema itself, or the instance.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum ValidateError {
    /// The schema is outside the supported subset.
    #[error(transparent)]
    Schema(#[from] SchemaError),
    /// The instance does not match the schema.
    #[error(transparent)]
    Violation(#[from] SchemaViolation),
}

/// A JSON Schema checked against the supported subset, with its grammar.
///
/// Compile once, then hand [`JsonSchema::gbnf`] to the sampler and check the
/// output with [`JsonSchema::validate`].
#[derive(Debug, Clone)]
pub struct JsonSchema {
    nodes: Vec<compile::Node>,
    root: compile::NodeId,
    gbnf: String,
}

impl JsonSchema {
    /// Checks `schema` and builds its grammar.
    pub fn compile(schema: &Value) -> Result<Self, SchemaError> {
        let (nodes, root) = compile::compile(schema)?;
        let gbnf = gbnf::emit(&nodes, root, "root")?;
        tracing::debug!(rules = gbnf.lines().count(), "compiled JSON Schema to GBNF");
        Ok(Self { nodes, root, gbnf })
    }

    /// The GBNF grammar (llama.cpp syntax, start rule `root`).
    pub fn gbnf(&self) -> &str {
        &self.gbnf
    }

    /// Checks `instance` against the schema, with the semantics described in
    /// the module documentation.
    pub fn validate(&self, instance: &Value) -> Result<(), SchemaViolation> {
        validate::validate(&self.nodes, self.root, instance)
    }
}

/// Converts a JSON Schema to a GBNF grammar whose start rule is `root`.
pub fn json_schema_to_gbnf(schema: &Value) -> Result<String, SchemaError> {
    JsonSchema::compile(schema).map(|compiled| compiled.gbnf)
}

/// [`json_schema_to_gbnf`] with the start rule named `rule` instead of
/// `root`, for a grammar that embeds the schema's values in rules of its own
/// (the tool calls of a model's own call syntax). The schema's other rules
/// are named after their place in the schema and a number (`city-3`), and the
/// shared ones `ws`, `value`, `string`, …; `rule` must be none of those.
pub fn json_schema_to_gbnf_rule(schema: &Value, rule: &str) -> Result<String, SchemaError> {
    if gbnf::reserved(rule) {
        return Err(SchemaError::Invalid {
            pointer: "#".into(),
            keyword: String::new(),
            reason: format!(
                "cannot start at a rule named {rule:?}: the grammar's own rules may use that name"
            ),
        });
    }
    let (nodes, root) = compile::compile(schema)?;
    gbnf::emit(&nodes, root, rule)
}

/// Checks `instance` against `schema` (compiling the schema each call; keep a
/// [`JsonSchema`] to check many instances).
pub fn validate(schema: &Value, instance: &Value) -> Result<(), ValidateError> {
    JsonSchema::compile(schema)?.validate(instance)?;
    Ok(())
}

/// A grammar for any JSON value (generic JSON mode), with the same bounded
/// whitespace and number lengths as the schema grammars.
pub fn json_value_grammar() -> &'static str {
    static GRAMMAR: std::sync::LazyLock<String> = std::sync::LazyLock::new(gbnf::any_value_grammar);
    &GRAMMAR
}
