//! Writes the GBNF grammar (llama.cpp syntax) for a compiled schema. Values
//! carry no whitespace of their own; containers put one bounded `ws` between
//! tokens, so no two tokens are ever separated by more than one `ws`.

use std::collections::{BTreeSet, HashMap};
use std::fmt::Write as _;

use serde_json::Value;

use super::compile::{Kind, Node, NodeId, Ty, Typed};
use super::format;
use super::int_range::{self, limit};
use super::validate::matches;
use super::SchemaError;

/// Shared rules: `(name, body, rules it uses)`.
const BUILTINS: &[(&str, &str, &[&str])] = &[
    ("ws", r#"| " " | "\n" [ \t]{0,20}"#, &[]),
    (
        "value",
        "object | array | string | number | boolean | null",
        &["object", "array", "string", "number", "boolean", "null"],
    ),
    (
        "object",
        r#""{" ws ( string ws ":" ws value ws ( "," ws string ws ":" ws value ws )* )? "}""#,
        &["ws", "string", "value"],
    ),
    (
        "array",
        r#""[" ws ( value ws ( "," ws value ws )* )? "]""#,
        &["ws", "value"],
    ),
    ("string", r#""\"" char* "\"""#, &["char"]),
    (
        "char",
        r#"[^"\\\x7F\x00-\x1F] | "\\" ( ["\\/bfnrt] | "u" hex4 )"#,
        &["hex4"],
    ),
    // Any four hex digits except D800–DFFF: serde_json refuses lone surrogates.
    (
        "hex4",
        "[0-9a-cA-CefEF] [0-9a-fA-F]{3} | [dD] [0-7] [0-9a-fA-F]{2}",
        &[],
    ),
    (
        "number",
        r#"integer ( "." [0-9]{1,16} )? ( [eE] [-+]? [0-9]{1,2} )?"#,
        &["integer"],
    ),
    ("integer", r#""-"? ( "0" | [1-9] [0-9]{0,15} )"#, &[]),
    ("boolean", r#""true" | "false""#, &[]),
    ("null", r#""null""#, &[]),
    ("key-char", r#"[^"\\\x7F\x00-\x1F]"#, &[]),
];

/// Dependencies of the format rules, which live in [`format::RULES`].
const FORMAT_DEPS: &[(&str, &[&str])] = &[
    ("date-string", &["full-date"]),
    (
        "full-date",
        &[
            "year",
            "month31",
            "day31",
            "month30",
            "day30",
            "day28",
            "leap-year",
        ],
    ),
    ("day30", &["day28"]),
    ("day31", &["day30"]),
    ("date-time-string", &["full-date", "hour", "minute"]),
    ("uuid-string", &["hex"]),
];

/// The grammar of any JSON value.
pub(crate) fn any_value_grammar() -> String {
    let mut emitter = Emitter::new(&[]);
    emitter.use_builtin("value");
    emitter.finish("root", "value")
}

/// Whether `name` is, or could be, one of the names the emitter gives its
/// own rules: a shared rule's, or a schema rule's (`hint-N`).
pub(crate) fn reserved(name: &str) -> bool {
    BUILTINS.iter().any(|(builtin, _, _)| *builtin == name)
        || format::RULES.iter().any(|(rule, _)| *rule == name)
        || name
            .rsplit_once('-')
            .is_some_and(|(_, n)| n.parse::<u64>().is_ok())
}

/// The grammar for node `root` of `nodes`, its start rule named `rule`.
pub(crate) fn emit(nodes: &[Node], root: NodeId, rule: &str) -> Result<String, SchemaError> {
    let mut emitter = Emitter::new(nodes);
    let start = emitter.reference(root)?;
    while let Some(id) = emitter.queue.pop() {
        let body = emitter.body(id)?;
        let name = emitter.names[&id].clone();
        emitter.rules.push((name, body));
    }
    Ok(emitter.finish(rule, &start))
}

struct Emitter<'a> {
    nodes: &'a [Node],
    names: HashMap<NodeId, String>,
    queue: Vec<NodeId>,
    rules: Vec<(String, String)>,
    builtins: BTreeSet<&'static str>,
}

/// A GBNF string literal for `text`; everything outside printable ASCII is
/// escaped so the grammar itself stays ASCII.
pub(crate) fn literal(text: &str) -> String {
    let mut out = String::from("\"");
    for ch in text.chars() {
        match ch {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            ' '..='~' => out.push(ch),
            _ => out.push_str(&escape(ch)),
        }
    }
    out.push('"');
    out
}

fn escape(ch: char) -> String {
    match u32::from(ch) {
        code @ 0..=0xFF => format!("\\x{code:02X}"),
        code @ 0x100..=0xFFFF => format!("\\u{code:04X}"),
        code => format!("\\U{code:08X}"),
    }
}

/// `expr` repeated between `min` and `max` times.
fn repeat(expr: &str, min: u64, max: Option<u64>) -> String {
    match (min, max) {
        (_, Some(0)) => String::new(),
        (0, None) => format!("{expr}*"),
        (1, None) => format!("{expr}+"),
        (0, Some(1)) => format!("{expr}?"),
        (min, None) => format!("{expr}{{{min},}}"),
        (min, Some(max)) if min == max => format!("{expr}{{{min}}}"),
        (min, Some(max)) => format!("{expr}{{{min},{max}}}"),
    }
}

impl<'a> Emitter<'a> {
    fn new(nodes: &'a [Node]) -> Self {
        Self {
            nodes,
            names: HashMap::new(),
            queue: Vec::new(),
            rules: Vec::new(),
            builtins: BTreeSet::new(),
        }
    }

    fn use_builtin(&mut self, name: &'static str) -> String {
        self.builtins.insert(name);
        name.to_owned()
    }

    fn finish(self, rule: &str, start: &str) -> String {
        let mut out = format!("{rule} ::= {start}\n");
        for (name, body) in &self.rules {
            let _ = writeln!(out, "{name} ::= {body}");
        }
        let mut needed = self.builtins;
        loop {
            let before = needed.len();
            for (name, _, deps) in BUILTINS.iter().copied() {
                if needed.contains(name) {
                    needed.extend(deps.iter().copied());
                }
            }
            for (name, deps) in FORMAT_DEPS {
                if needed.contains(name) {
                    needed.extend(deps.iter().copied());
                }
            }
            if needed.len() == before {
                break;
            }
        }
        let all = BUILTINS
            .iter()
            .map(|(name, body, _)| (*name, *body))
            .chain(format::RULES.iter().copied());
        for (name, body) in all.filter(|(name, _)| needed.contains(name)) {
            let _ = writeln!(out, "{name} ::= {body}");
        }
        out
    }

    /// A rule name (or builtin) matching node `id`, queueing its rule.
    fn reference(&mut self, id: NodeId) -> Result<String, SchemaError> {
        let nodes = self.nodes;
        let node = &nodes[id];
        match &node.kind {
            Kind::Alias(target) => return self.reference(*target),
            Kind::Any | Kind::Pending => return Ok(self.use_builtin("value")),
            Kind::Typed(typed) if typed.types.len() == 1 => {
                if let Some(simple) = self.simple(typed.types[0], typed) {
                    return Ok(simple);
                }
            }
            _ => {}
        }
        if let Some(name) = self.names.get(&id) {
            return Ok(name.clone());
        }
        let name = format!("{}-{id}", hint(&node.path));
        self.names.insert(id, name.clone());
        self.queue.push(id);
        Ok(name)
    }

    /// The builtin for `ty` when `typed` adds nothing to it.
    fn simple(&mut self, ty: Ty, typed: &Typed) -> Option<String> {
        let name = match ty {
            Ty::Null => "null",
            Ty::Boolean => "boolean",
            Ty::Number => "number",
            Ty::Integer if typed.minimum.is_none() && typed.maximum.is_none() => "integer",
            Ty::String if typed.min_length == 0 && typed.max_length.is_none() => {
                typed.format.map_or("string", |f| f.rule())
            }
            Ty::Object if typed.properties.is_empty() && self.is_any(typed.extra) => "object",
            Ty::Array
                if typed.prefix.is_empty()
                    && self.is_any(typed.items)
                    && typed.min_items == 0
                    && typed.max_items.is_none() =>
            {
                "array"
            }
            _ => return None,
        };
        Some(self.use_builtin(name))
    }

    fn is_any(&self, id: Option<NodeId>) -> bool {
        id.is_some_and(|id| matches!(self.nodes[id].kind, Kind::Any))
    }

    fn body(&mut self, id: NodeId) -> Result<String, SchemaError> {
        let nodes = self.nodes;
        let node = &nodes[id];
        match &node.kind {
            Kind::Enum { values, rest } => {
                let kept: Vec<&Value> = values
                    .iter()
                    .filter(|v| matches(self.nodes, *rest, v))
                    .collect();
                if kept.is_empty() {
                    return Err(SchemaError::Unsatisfiable {
                        pointer: node.path.clone(),
                        reason: "no `enum`/`const` value satisfies the other keywords".to_owned(),
                    });
                }
                Ok(kept
                    .iter()
                    .map(|v| literal(&v.to_string()))
                    .collect::<Vec<_>>()
                    .join(" | "))
            }
            Kind::AnyOf { alts, .. } => {
                let alts = alts
                    .iter()
                    .map(|alt| self.reference(*alt))
                    .collect::<Result<Vec<_>, _>>()?;
                Ok(alts.join(" | "))
            }
            Kind::Typed(typed) => {
                let mut alts = Vec::new();
                for ty in &typed.types {
                    alts.push(self.typed_alt(id, *ty, typed)?);
                }
                Ok(alts.join(" | "))
            }
            Kind::Alias(_) | Kind::Any | Kind::Pending => self.reference(id),
        }
    }

    fn typed_alt(&mut self, id: NodeId, ty: Ty, typed: &Typed) -> Result<String, SchemaError> {
        if let Some(simple) = self.simple(ty, typed) {
            return Ok(simple);
        }
        let nodes = self.nodes;
        let path = &nodes[id].path;
        Ok(match ty {
            Ty::Integer => {
                let lo = typed.minimum.map_or(-limit(), i128::from).max(-limit());
                let hi = typed.maximum.map_or(limit(), i128::from).min(limit());
                if lo > hi {
                    return Err(SchemaError::Unsatisfiable {
                        pointer: path.clone(),
                        reason: format!(
                            "integers here have at most {} digits",
                            int_range::MAX_DIGITS
                        ),
                    });
                }
                format!("( {} )", int_range::range_expr(lo, hi))
            }
            Ty::String => {
                let ch = self.use_builtin("char");
                format!(
                    "\"\\\"\" {} \"\\\"\"",
                    repeat(&ch, typed.min_length, typed.max_length)
                )
            }
            Ty::Object => format!("( {} )", self.object(id, typed)?),
            Ty::Array => format!("( {} )", self.array(typed)?),
            // `simple` already answers for these; their builtins share their names.
            Ty::Null | Ty::Boolean | Ty::Number => self.use_builtin(ty.name()),
        })
    }

    fn object(&mut self, id: NodeId, typed: &Typed) -> Result<String, SchemaError> {
        let ws = self.use_builtin("ws");
        let mut kvs = Vec::new();
        for property in &typed.properties {
            let value = self.reference(property.node)?;
            kvs.push((
                format!(
                    "{} {ws} \":\" {ws} {value} {ws}",
                    literal(&Value::from(property.name.as_str()).to_string())
                ),
                property.required,
            ));
        }
        let extra = match typed.extra {
            None => None,
            Some(schema) => {
                let key = self.extra_key(
                    id,
                    &typed
                        .properties
                        .iter()
                        .map(|p| p.name.as_str())
                        .collect::<Vec<_>>(),
                );
                Some(format!(
                    "{key} {ws} \":\" {ws} {} {ws}",
                    self.reference(schema)?
                ))
            }
        };
        // seq[i][first]: the listed properties from i on (required ones
        // always, in declared order), then extras; `first` when nothing
        // has been written yet, so no leading comma.
        let base = format!("{}-{id}", hint(&self.nodes[id].path));
        let mut next: [Option<String>; 2] = match &extra {
            None => [None, None],
            Some(kv) => [
                Some(format!("( \",\" {ws} {kv} )*")),
                Some(format!("( {kv} ( \",\" {ws} {kv} )* )?")),
            ],
        };
        for (i, (kv, required)) in kvs.iter().enumerate().rev() {
            let mut current: [Option<String>; 2] = [None, None];
            for first in [false, true] {
                let comma = if first {
                    String::new()
                } else {
                    format!("\",\" {ws} ")
                };
                let take = format!(
                    "{comma}{kv}{}",
                    next[0]
                        .as_ref()
                        .map(|n| format!(" {n}"))
                        .unwrap_or_default()
                );
                let body = match (required, &next[usize::from(first)]) {
                    (true, _) => take,
                    (false, None) => format!("( {take} )?"),
                    (false, Some(skip)) => format!("{take} | {skip}"),
                };
                // Upper case keeps these apart from node rules (lower case).
                let name = format!("{base}-{}{i}", if first { "P" } else { "M" });
                self.rules.push((name.clone(), body));
                current[usize::from(first)] = Some(name);
            }
            next = current;
        }
        let inner = next[1]
            .as_ref()
            .map(|n| format!(" {n}"))
            .unwrap_or_default();
        Ok(format!("\"{{\" {ws}{inner} \"}}\""))
    }

    /// A rule for keys that are not any of `listed`, written without escapes
    /// (so that a listed name cannot come back spelled differently).
    fn extra_key(&mut self, id: NodeId, listed: &[&str]) -> String {
        let key_char = self.use_builtin("key-char");
        let base = format!("{}-{id}-K", hint(&self.nodes[id].path));
        // A trie walk: after each prefix of a listed name, either close the
        // key (unless the prefix is a listed name), continue along the trie,
        // or leave it with a character no listed name has there.
        let mut prefixes: Vec<String> = vec![String::new()];
        let mut rules = Vec::new();
        let mut i = 0;
        while i < prefixes.len() {
            let prefix = prefixes[i].clone();
            let mut nexts: Vec<char> = listed
                .iter()
                .filter_map(|name| {
                    name.strip_prefix(prefix.as_str())
                        .and_then(|rest| rest.chars().next())
                })
                // A name needing an escape cannot be spelled by these keys
                // at all, so it needs no branch (a raw `"` would end the key).
                .filter(|c| !matches!(c, '"' | '\\' | '\u{0}'..='\u{1F}' | '\u{7F}'))
                .collect();
            nexts.sort_unstable();
            nexts.dedup();
            let mut alts = Vec::new();
            if !listed.contains(&prefix.as_str()) {
                alts.push("\"\\\"\"".to_owned());
            }
            let excluded: String = nexts.iter().map(|c| escape(*c)).collect();
            alts.push(format!(
                "[^\"\\\\\\x7F\\x00-\\x1F{excluded}] {key_char}* \"\\\"\""
            ));
            for c in nexts {
                let mut longer = prefix.clone();
                longer.push(c);
                let index = prefixes
                    .iter()
                    .position(|p| *p == longer)
                    .unwrap_or_else(|| {
                        prefixes.push(longer);
                        prefixes.len() - 1
                    });
                alts.push(format!("{} {base}{index}", literal(&c.to_string())));
            }
            rules.push((format!("{base}{i}"), alts.join(" | ")));
            i += 1;
        }
        self.rules.extend(rules);
        format!("( \"\\\"\" {base}0 )")
    }

    fn array(&mut self, typed: &Typed) -> Result<String, SchemaError> {
        let ws = self.use_builtin("ws");
        let hi = typed.max_items;
        let k = typed.prefix.len() as u64;
        // Tail after the prefix: items k.. (only reached when hi allows it).
        let mut tail = None;
        let rest_max = hi.map(|h| h.saturating_sub(k));
        if let (Some(items), false) = (typed.items, rest_max == Some(0)) {
            let item = format!("{} {ws}", self.reference(items)?);
            let rest_min = typed.min_items.saturating_sub(k);
            tail = Some(if k == 0 {
                let more = repeat(
                    &format!("( \",\" {ws} {item} )"),
                    rest_min.saturating_sub(1),
                    rest_max.map(|m| m - 1),
                );
                let seq = format!("{item} {more}");
                if rest_min == 0 {
                    format!("( {seq} )?")
                } else {
                    seq
                }
            } else {
                repeat(&format!("( \",\" {ws} {item} )"), rest_min, rest_max)
            });
        }
        let mut seq = tail;
        for (i, schema) in typed.prefix.iter().enumerate().rev() {
            if hi.is_some_and(|h| i as u64 >= h) {
                seq = None;
                continue;
            }
            let comma = if i == 0 {
                String::new()
            } else {
                format!("\",\" {ws} ")
            };
            let take = format!(
                "{comma}{} {ws}{}",
                self.reference(*schema)?,
                seq.map(|s| format!(" {s}")).unwrap_or_default()
            );
            seq = Some(if (i as u64) < typed.min_items {
                take
            } else {
                format!("( {take} )?")
            });
        }
        Ok(format!(
            "\"[\" {ws}{} \"]\"",
            seq.map(|s| format!(" {s}")).unwrap_or_default()
        ))
    }
}

/// A readable rule-name stem from the last segment of a schema pointer.
fn hint(path: &str) -> String {
    let last = path.rsplit('/').next().unwrap_or_default();
    let mut out = String::new();
    for ch in last.chars() {
        if ch.is_ascii_alphanumeric() {
            out.push(ch.to_ascii_lowercase());
        } else if !out.ends_with('-') && !out.is_empty() {
            out.push('-');
        }
        if out.len() >= 20 {
            break;
        }
    }
    let trimmed = out.trim_end_matches('-');
    if trimmed.is_empty() || trimmed.chars().all(|c| c.is_ascii_digit()) {
        format!("s{trimmed}")
    } else {
        trimmed.to_owned()
    }
}
