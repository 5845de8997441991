//! Proves `oneOf` alternatives disjoint. A grammar can only offer
//! alternatives, not count how many match, so `oneOf` is enforced exactly
//! only when no value can match two alternatives. The proof is conservative:
//! "cannot tell" refuses the schema.

use super::compile::{Kind, Node, NodeId, Ty, Typed};
use super::validate::matches;
use super::SchemaError;

/// How deep the proof follows nested properties before giving up.
const MAX_DEPTH: usize = 16;

/// Refuses the `oneOf` at `id` unless every pair of alternatives is disjoint.
pub(crate) fn check_one_of(nodes: &[Node], id: NodeId) -> Result<(), SchemaError> {
    let Kind::AnyOf { alts, .. } = &nodes[id].kind else {
        return Ok(());
    };
    for (i, a) in alts.iter().enumerate() {
        for (j, b) in alts.iter().enumerate().skip(i + 1) {
            if !disjoint(nodes, *a, *b, 0) {
                return Err(SchemaError::UnsupportedUse {
                    pointer: nodes[id].path.clone(),
                    keyword: "oneOf".to_owned(),
                    reason: format!(
                        "alternatives {i} and {j} may both match one value, and a grammar cannot enforce \
                         exactly one; use `anyOf`, or tell them apart by type or by a required `const` property"
                    ),
                });
            }
        }
    }
    Ok(())
}

fn resolve(nodes: &[Node], mut id: NodeId) -> NodeId {
    // Cycles of aliases were refused before this runs.
    while let Kind::Alias(target) = nodes[id].kind {
        id = target;
    }
    id
}

/// True only when no value matches both `a` and `b`.
fn disjoint(nodes: &[Node], a: NodeId, b: NodeId, depth: usize) -> bool {
    if depth > MAX_DEPTH {
        return false;
    }
    let (a, b) = (resolve(nodes, a), resolve(nodes, b));
    match (&nodes[a].kind, &nodes[b].kind) {
        (Kind::Enum { values, .. }, _) => values.iter().all(|v| !matches(nodes, b, v)),
        (_, Kind::Enum { values, .. }) => values.iter().all(|v| !matches(nodes, a, v)),
        (Kind::AnyOf { alts, .. }, _) => alts.iter().all(|alt| disjoint(nodes, *alt, b, depth + 1)),
        (_, Kind::AnyOf { alts, .. }) => alts.iter().all(|alt| disjoint(nodes, a, *alt, depth + 1)),
        (Kind::Typed(x), Kind::Typed(y)) => typed_disjoint(nodes, x, y, depth),
        _ => false,
    }
}

fn family(ty: Ty) -> Ty {
    if ty == Ty::Integer {
        Ty::Number
    } else {
        ty
    }
}

fn typed_disjoint(nodes: &[Node], x: &Typed, y: &Typed, depth: usize) -> bool {
    let shared: Vec<Ty> = x
        .types
        .iter()
        .map(|t| family(*t))
        .filter(|t| y.types.iter().any(|u| family(*u) == *t))
        .collect();
    match shared.as_slice() {
        [] => true,
        [Ty::Object] => {
            objects_disjoint(nodes, x, y, depth) || objects_disjoint(nodes, y, x, depth)
        }
        _ => false,
    }
}

/// Whether some property required by `x` cannot take a value `y` accepts.
fn objects_disjoint(nodes: &[Node], x: &Typed, y: &Typed, depth: usize) -> bool {
    x.properties.iter().filter(|p| p.required).any(|p| {
        match y
            .properties
            .iter()
            .find(|q| q.name == p.name)
            .map(|q| q.node)
            .or(y.extra)
        {
            None => true,
            Some(other) => disjoint(nodes, p.node, other, depth + 1),
        }
    })
}
