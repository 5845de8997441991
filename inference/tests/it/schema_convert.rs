//! The JSON Schema → GBNF converter, construct by construct: which strings
//! each grammar takes and refuses (checked with the GBNF interpreter in
//! `schema_support`), the validator's verdicts on the same strings, and the
//! error for every construct outside the supported subset.

#[allow(dead_code)]
use crate::schema_support;

use schema_support::{Grammar, Rng};
use serde_json::{json, Value};
use troupe_inference::schema::{
    json_schema_to_gbnf, json_value_grammar, validate, JsonSchema, SchemaError, ValidateError,
    Violation,
};

fn grammar(schema: &Value) -> (JsonSchema, Grammar) {
    let compiled =
        JsonSchema::compile(schema).unwrap_or_else(|e| panic!("{schema} should compile: {e}"));
    let parsed = Grammar::parse(compiled.gbnf())
        .unwrap_or_else(|e| panic!("bad grammar: {e}\n{}", compiled.gbnf()));
    (compiled, parsed)
}

/// Asserts the grammar and the validator agree with `valid` on each text.
fn check(schema: &Value, accepted: &[&str], refused: &[&str]) {
    let (compiled, parsed) = grammar(schema);
    schema_support::dump(compiled.gbnf(), accepted, refused);
    for text in accepted {
        assert!(
            parsed.accepts(text),
            "grammar should accept {text}\n{}",
            compiled.gbnf()
        );
        let value: Value =
            serde_json::from_str(text).unwrap_or_else(|e| panic!("{text} is not JSON: {e}"));
        assert_eq!(
            compiled.validate(&value),
            Ok(()),
            "validator should accept {text}"
        );
    }
    for text in refused {
        assert!(
            !parsed.accepts(text),
            "grammar should refuse {text}\n{}",
            compiled.gbnf()
        );
        if let Ok(value) = serde_json::from_str::<Value>(text) {
            assert!(
                compiled.validate(&value).is_err(),
                "validator should refuse {text}"
            );
        }
    }
}

fn worker_action() -> Value {
    json!({
        "type": "object",
        "properties": {
            "thought": {"type": "string"},
            "action": {
                "type": "object",
                "properties": {
                    "tool": {"enum": ["shell", "read_file"]},
                    "args": {"type": "object", "additionalProperties": {"type": "string"}}
                },
                "required": ["tool", "args"]
            }
        },
        "required": ["thought", "action"]
    })
}

#[test]
fn object_properties_are_required_listed_and_in_declared_order() {
    check(
        &worker_action(),
        &[
            r#"{"thought":"x","action":{"tool":"shell","args":{"cmd":"ls"}}}"#,
            "{ \"thought\" : \"\" ,\n  \"action\": {\"tool\": \"read_file\", \"args\": {}} }",
        ],
        &[
            r#"{"thought":"x"}"#,
            r#"{"thought":"x","action":{"tool":"rm","args":{}}}"#,
            r#"{"thought":"x","action":{"tool":"shell","args":{}},"extra":1}"#,
            r#"{"thought":"x","action":{"tool":"shell","args":{"n":1}}}"#,
        ],
    );
    // Declared order is part of the grammar (not of validation: JSON objects
    // are unordered).
    let (compiled, parsed) = grammar(&worker_action());
    let swapped = r#"{"action":{"tool":"shell","args":{}},"thought":"x"}"#;
    assert!(!parsed.accepts(swapped));
    assert_eq!(
        compiled.validate(&serde_json::from_str(swapped).unwrap()),
        Ok(())
    );
}

#[test]
fn optional_properties_may_be_left_out_anywhere() {
    let schema = json!({
        "type": "object",
        "properties": {"a": {"type": "integer"}, "b": {"type": "boolean"}, "c": {"type": "null"}},
        "required": ["b"]
    });
    check(
        &schema,
        &[
            r#"{"b":true}"#,
            r#"{"a":1,"b":false}"#,
            r#"{"b":true,"c":null}"#,
            r#"{"a":-5,"b":true,"c":null}"#,
        ],
        &[
            r#"{}"#,
            r#"{"a":1}"#,
            r#"{"a":1,,"b":true}"#,
            r#"{,"b":true}"#,
            r#"{"b":true,}"#,
        ],
    );
}

#[test]
fn bare_object_is_any_object_and_listed_properties_close_it() {
    check(
        &json!({"type": "object"}),
        &[r#"{}"#, r#"{"x":[1,{"y":null}]}"#],
        &["[]", "1"],
    );
    check(
        &json!({"type": "object", "properties": {}}),
        &["{}"],
        &[r#"{"x":1}"#],
    );
}

#[test]
fn additional_properties_never_repeat_a_listed_name() {
    let schema = json!({
        "type": "object",
        "properties": {"ab": {"type": "integer"}},
        "additionalProperties": {"type": "string"}
    });
    check(
        &schema,
        &[
            r#"{"ab":1}"#,
            r#"{"ab":1,"a":"x","abc":"y","":"z"}"#,
            r#"{"b":"x"}"#,
            "{}",
        ],
        &[r#"{"ab":1,"ab":"x"}"#, r#"{"ab":"x"}"#, r#"{"c":1}"#],
    );
}

#[test]
fn listed_names_needing_escapes_do_not_break_extra_keys() {
    let schema = json!({
        "type": "object",
        "properties": {"a\"b": {"type": "integer"}, "t\tu": {"type": "null"}},
        "additionalProperties": {"type": "string"}
    });
    check(
        &schema,
        &[
            r#"{"a\"b":1,"a":"x"}"#,
            r#"{"ab":"y","t":"z"}"#,
            r#"{"t\tu":null}"#,
        ],
        &[
            r#"{"a\"b":"x"}"#,
            r#"{"a"c":"x"}"#,
            r#"{"a"b":"x"}"#,
            r#"{"a\"b":1,"a\"b":"x"}"#,
        ],
    );
}

#[test]
fn required_name_missing_from_properties_uses_additional_schema() {
    let schema =
        json!({"type": "object", "required": ["k"], "additionalProperties": {"type": "integer"}});
    check(
        &schema,
        &[r#"{"k":1}"#, r#"{"k":1,"j":2}"#],
        &[r#"{"j":2}"#, r#"{"k":"x"}"#],
    );
    check(
        &json!({"type": "object", "required": ["k"]}),
        &[r#"{"k":[1]}"#, r#"{"k":1,"j":2}"#],
        &[r#"{"j":2}"#],
    );
    let closed = json!({"type": "object", "required": ["k"], "additionalProperties": false});
    assert!(
        matches!(JsonSchema::compile(&closed), Err(SchemaError::Unsatisfiable { pointer, .. }) if pointer == "#")
    );
}

#[test]
fn arrays_bound_their_length_and_tuples_close() {
    let schema =
        json!({"type": "array", "items": {"type": "integer"}, "minItems": 1, "maxItems": 3});
    check(
        &schema,
        &["[1]", "[1, 2,3]"],
        &["[]", "[1,2,3,4]", "[1,]", r#"["a"]"#],
    );
    let tuple = json!({"type": "array", "prefixItems": [{"type": "string"}, {"type": "integer"}], "items": false});
    check(
        &tuple,
        &["[]", r#"["a"]"#, r#"["a",1]"#],
        &[r#"["a",1,2]"#, "[1]"],
    );
    let open = json!({"type": "array", "prefixItems": [{"type": "string"}], "items": {"type": "null"}, "minItems": 2});
    check(
        &open,
        &[r#"["a",null]"#, r#"["a",null,null]"#],
        &[r#"["a"]"#, r#"["a","b"]"#],
    );
}

#[test]
fn string_length_counts_decoded_characters() {
    let schema = json!({"type": "string", "minLength": 2, "maxLength": 3});
    check(
        &schema,
        &[r#""ab""#, r#""\n\u00e9x""#, r#""中文""#],
        &[r#""a""#, r#""abcd""#, r#""\ud800x""#],
    );
}

#[test]
fn formats_are_exact() {
    check(
        &json!({"type": "string", "format": "date"}),
        &[r#""2024-02-29""#, r#""2000-02-29""#, r#""2023-12-31""#],
        &[
            r#""2023-02-29""#,
            r#""1900-02-29""#,
            r#""2023-04-31""#,
            r#""2023-13-01""#,
            r#""2023-1-01""#,
        ],
    );
    check(
        &json!({"type": "string", "format": "date-time"}),
        &[
            r#""2024-05-06T07:08:09Z""#,
            r#""2024-05-06T23:59:59.123+05:30""#,
        ],
        &[
            r#""2024-05-06T24:00:00Z""#,
            r#""2024-05-06 07:08:09Z""#,
            r#""2024-05-06T07:08:09""#,
        ],
    );
    check(
        &json!({"type": "string", "format": "uuid"}),
        &[r#""123e4567-e89b-12d3-A456-426614174000""#],
        &[
            r#""123e4567e89b12d3a456426614174000""#,
            r#""123e4567-e89b-12d3-a456-42661417400g""#,
        ],
    );
}

#[test]
fn integer_ranges_take_exactly_the_integers_in_range() {
    let ranges: &[(Option<i64>, Option<i64>)] = &[
        (Some(1), Some(10)),
        (Some(-12), Some(7)),
        (Some(-250), Some(-33)),
        (Some(95), Some(1234)),
        (Some(0), None),
        (None, Some(-5)),
        (Some(7), Some(7)),
    ];
    for (lo, hi) in ranges {
        let mut schema = json!({"type": "integer"});
        if let Some(lo) = lo {
            schema["minimum"] = json!(lo);
        }
        if let Some(hi) = hi {
            schema["maximum"] = json!(hi);
        }
        let (compiled, parsed) = grammar(&schema);
        let from = lo.or(*hi).unwrap_or(0) - 1300;
        let to = hi.or(*lo).unwrap_or(0) + 1300;
        for n in from..=to {
            let inside = lo.is_none_or(|lo| n >= lo) && hi.is_none_or(|hi| n <= hi);
            assert_eq!(parsed.accepts(&n.to_string()), inside, "{n} with {schema}");
            assert_eq!(
                compiled.validate(&json!(n)).is_ok(),
                inside,
                "validator, {n} with {schema}"
            );
        }
        assert!(!parsed.accepts("01") && !parsed.accepts("-0") && !parsed.accepts("1.0"));
    }
    check(
        &json!({"type": "integer", "exclusiveMinimum": 0.5, "exclusiveMaximum": 3}),
        &["1", "2"],
        &["0", "3"],
    );
}

#[test]
fn enum_and_const_emit_canonical_text_filtered_by_type() {
    let schema = json!({"type": "string", "enum": ["a\"b", 1, null, "é"]});
    check(&schema, &[r#""a\"b""#, r#""é""#], &["1", "null", r#""a""#]);
    let any = json!({"enum": [1.5, {"k": [true]}, null]});
    check(
        &any,
        &["1.5", r#"{"k":[true]}"#, "null"],
        &["2", r#"{"k":[false]}"#],
    );
    let never = json!({"type": "integer", "enum": ["x"]});
    assert!(matches!(
        JsonSchema::compile(&never),
        Err(SchemaError::Unsatisfiable { .. })
    ));
}

#[test]
fn unions_any_of_and_disjoint_one_of() {
    check(
        &json!({"type": ["string", "null"]}),
        &["null", r#""x""#],
        &["1", "false"],
    );
    check(
        &json!({"type": ["integer", "number"]}),
        &["1", "1.5e3"],
        &[r#""1""#],
    );
    let any_of = json!({"anyOf": [{"type": "integer", "minimum": 5}, {"type": "boolean"}]});
    check(&any_of, &["5", "true"], &["4", "null"]);
    let one_of = json!({"oneOf": [
        {"type": "object", "properties": {"kind": {"const": "a"}, "x": {"type": "integer"}}, "required": ["kind"]},
        {"type": "object", "properties": {"kind": {"const": "b"}}, "required": ["kind"]},
        {"type": "string"}
    ]});
    check(
        &one_of,
        &[r#"{"kind":"a","x":1}"#, r#"{"kind":"b"}"#, r#""s""#],
        &[r#"{"kind":"b","x":1}"#, r#"{}"#],
    );
}

#[test]
fn recursive_refs_become_recursive_rules() {
    let schema = json!({
        "$defs": {"node": {
            "type": "object",
            "properties": {"name": {"type": "string"}, "children": {"type": "array", "items": {"$ref": "#/$defs/node"}}},
            "required": ["name", "children"]
        }},
        "$ref": "#/$defs/node"
    });
    check(
        &schema,
        &[
            r#"{"name":"r","children":[{"name":"a","children":[]},{"name":"b","children":[{"name":"c","children":[]}]}]}"#,
        ],
        &[r#"{"name":"r","children":[{"name":"a"}]}"#],
    );
}

#[test]
fn whitespace_between_tokens_is_bounded() {
    let (_, parsed) = grammar(&json!({"type": "array", "items": {"type": "integer"}}));
    assert!(parsed.accepts("[ 1,\n    2 ]"));
    assert!(parsed.accepts(&format!("[1,\n{}2]", " ".repeat(20))));
    assert!(!parsed.accepts(&format!("[1,\n{}2]", " ".repeat(21))));
    assert!(!parsed.accepts("[1,  2]"), "two spaces are two ws tokens");
    assert!(!parsed.accepts(" [1]"), "no whitespace before the value");
}

#[test]
fn any_json_grammar_takes_json_and_only_json() {
    let parsed = Grammar::parse(json_value_grammar()).expect("any-JSON grammar parses");
    let mut rng = Rng::new(7);
    for _ in 0..300 {
        let text = parsed.sample(&mut rng, 12);
        assert!(
            serde_json::from_str::<Value>(&text).is_ok(),
            "not JSON: {text}"
        );
    }
    for text in [
        r#"{"a":[1,2.5e-3,"x\u00e9",null,true]}"#,
        "-0",
        "\"\\ud7ff\"",
    ] {
        assert!(parsed.accepts(text), "{text}");
    }
    for text in ["{'a':1}", "[1,]", "01", "\"\\ud800\"", "1e400", "NaN"] {
        assert!(!parsed.accepts(text), "{text}");
    }
    assert_eq!(
        json_schema_to_gbnf(&json!({})).map(|g| g.contains("root ::= value")),
        Ok(true)
    );
}

#[test]
fn annotations_are_ignored() {
    let schema = json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema", "$id": "x", "title": "t",
        "description": "d", "default": 1, "examples": [1], "$comment": "c", "type": "integer"
    });
    check(&schema, &["1"], &["\"1\""]);
}

fn unsupported(schema: Value) -> SchemaError {
    match JsonSchema::compile(&schema) {
        Ok(compiled) => panic!(
            "{schema} should be refused, got grammar\n{}",
            compiled.gbnf()
        ),
        Err(error) => error,
    }
}

#[test]
fn every_unsupported_keyword_is_an_error_at_its_pointer() {
    for keyword in [
        "allOf",
        "not",
        "if",
        "then",
        "else",
        "patternProperties",
        "dependentRequired",
        "dependentSchemas",
        "minProperties",
        "maxProperties",
        "propertyNames",
        "uniqueItems",
        "multipleOf",
        "contains",
        "unevaluatedProperties",
        "pattern",
        "$anchor",
        "nullable",
    ] {
        let schema =
            json!({"type": "object", "properties": {"args": {"type": "object", keyword: true}}});
        let error = unsupported(schema);
        assert_eq!(
            error,
            SchemaError::Unsupported {
                pointer: "#/properties/args".into(),
                keyword: keyword.into()
            },
            "{keyword}"
        );
    }
    let error = unsupported(json!({"properties": {"args": {"patternProperties": {}}}}));
    assert_eq!(
        error.to_string(),
        "unsupported JSON Schema keyword `patternProperties` at #/properties/args"
    );
}

#[test]
fn unenforceable_uses_are_errors_at_their_pointer() {
    let cases = [
        (json!({"type": "number", "minimum": 0}), "#", "minimum"),
        (json!({"type": "string", "format": "email"}), "#", "format"),
        (
            json!({"items": {"type": "string", "maxLength": 5000}}),
            "#/items",
            "maxLength",
        ),
        (json!({"type": "object", "anyOf": [{}]}), "#", "type"),
        (
            json!({"$ref": "#/$defs/a", "type": "string", "$defs": {"a": {}}}),
            "#",
            "type",
        ),
        (
            json!({"oneOf": [{"type": "integer"}, {"type": "number"}]}),
            "#",
            "oneOf",
        ),
        (
            json!({"oneOf": [{"type": "object"}, {"type": "object", "required": ["a"]}]}),
            "#",
            "oneOf",
        ),
        (json!({"type": "array", "items": [{}]}), "#", "items"),
        (json!({"type": "string", "minItems": 1}), "#", "minItems"),
        (
            json!({"properties": {"a": false}}),
            "#/properties/a",
            "false",
        ),
    ];
    for (schema, pointer, keyword) in cases {
        match unsupported(schema.clone()) {
            SchemaError::UnsupportedUse {
                pointer: p,
                keyword: k,
                ..
            } => {
                assert_eq!((p.as_str(), k.as_str()), (pointer, keyword), "{schema}")
            }
            other => panic!("{schema}: expected UnsupportedUse, got {other:?}"),
        }
    }
}

#[test]
fn bad_refs_cycles_and_invalid_values_are_errors() {
    assert!(matches!(
        unsupported(json!({"properties": {"a": {"$ref": "other.json#/x"}}})),
        SchemaError::UnresolvedRef { pointer, .. } if pointer == "#/properties/a"
    ));
    assert!(matches!(
        unsupported(json!({"$ref": "#/$defs/missing"})),
        SchemaError::UnresolvedRef { .. }
    ));
    assert!(matches!(
        unsupported(
            json!({"$defs": {"a": {"$ref": "#/$defs/b"}, "b": {"anyOf": [{"$ref": "#/$defs/a"}, {"type": "null"}]}}, "$ref": "#/$defs/a"})
        ),
        SchemaError::RefCycle { .. }
    ));
    assert!(
        matches!(unsupported(json!({"type": "strin"})), SchemaError::Invalid { keyword, .. } if keyword == "type")
    );
    assert!(matches!(
        unsupported(json!({"type": "array", "minItems": 3, "maxItems": 2})),
        SchemaError::Unsatisfiable { .. }
    ));
    assert!(matches!(
        unsupported(json!({"enum": []})),
        SchemaError::Invalid { .. }
    ));
}

#[test]
fn validate_names_what_is_wrong_and_where() {
    let schema = worker_action();
    let violation = |instance: Value| match validate(&schema, &instance) {
        Err(ValidateError::Violation(v)) => v,
        other => panic!("{instance} should be refused, got {other:?}"),
    };
    let v = violation(json!({"thought": "x"}));
    assert_eq!(
        v.violation,
        Violation::MissingProperty {
            name: "action".into()
        }
    );
    assert_eq!(v.instance_pointer, "#");
    let v = violation(json!({"thought": "x", "action": {"tool": "rm", "args": {}}}));
    assert_eq!(
        (v.instance_pointer.as_str(), v.violation),
        ("#/action/tool", Violation::NotInEnum)
    );
    let v = violation(json!({"thought": "x", "action": {"tool": "shell", "args": {}}, "x": 1}));
    assert_eq!(
        v.violation,
        Violation::UnexpectedProperty { name: "x".into() }
    );
    let v = violation(json!({"thought": 1, "action": {"tool": "shell", "args": {}}}));
    assert_eq!(v.schema_pointer, "#/properties/thought");
    let list = json!({"type": "array", "maxItems": 2});
    assert!(matches!(
        validate(&list, &json!([1, 2, 3])),
        Err(ValidateError::Violation(v)) if v.violation == Violation::TooManyItems { max: 2, found: 3 }
    ));
    assert!(matches!(
        validate(&json!({"not": {}}), &json!(1)),
        Err(ValidateError::Schema(_))
    ));
}

#[test]
fn a_schema_can_start_at_a_rule_of_another_name_but_not_a_taken_one() {
    let schema = json!({"type": "object", "properties": {"a": {"type": "integer"}}});
    let gbnf = troupe_inference::schema::json_schema_to_gbnf_rule(&schema, "call-json").unwrap();
    assert!(gbnf.starts_with("call-json ::= "), "{gbnf}");
    assert!(!gbnf.contains("root ::="), "{gbnf}");
    for taken in ["ws", "string", "value", "a-3"] {
        assert!(
            troupe_inference::schema::json_schema_to_gbnf_rule(&schema, taken).is_err(),
            "{taken} is one of the grammar's own names"
        );
    }
}
