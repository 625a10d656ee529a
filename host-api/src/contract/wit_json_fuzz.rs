//! Fuzzed WIT <-> JSON conversion, against the parameter types of a real
//! component (`plain-exports`, built by `cargo xtask build`): for values
//! built to fit each type and then mutated, the JSON Schema the host
//! advertises and validates with and the converter must agree (a value the
//! schema accepts converts, one it refuses is refused with the field
//! named), and what converts comes back to the same JSON. The host checks
//! arguments against the schema before converting, so a disagreement is a
//! call refused for no reason, or a reason the client was never shown.
//!
//! `STOCKADE_FUZZ_CASES` sets the cases (default 512), as for the
//! runtime's fuzzed parsers.

use std::path::PathBuf;

use proptest::prelude::*;
use serde_json::{Value, json};
use wasmtime::component::types::{ComponentItem, Type};
use wasmtime::component::{Component, Val};
use wasmtime::{Config, Engine};

use super::wit_json::{schema_of, to_json, to_val};

/// Every parameter type of every function `plain-exports` exports.
fn parameter_types() -> &'static [(String, Type)] {
    static TYPES: std::sync::OnceLock<Vec<(String, Type)>> = std::sync::OnceLock::new();
    TYPES.get_or_init(|| {
        let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../target/wasm32-wasip2/release/plain_exports.wasm");
        assert!(
            path.is_file(),
            "{} is missing: run `cargo xtask build` first",
            path.display()
        );
        let mut config = Config::new();
        config.wasm_component_model(true);
        let engine = Engine::new(&config).expect("an engine");
        let component = Component::from_file(&engine, &path).expect("the component compiles");
        let mut types = Vec::new();
        let mut add = |func: &wasmtime::component::types::ComponentFunc, name: &str| {
            for (param, ty) in func.params() {
                types.push((format!("{name}({param})"), ty));
            }
        };
        for (name, item) in component.component_type().exports(&engine) {
            match item.ty {
                ComponentItem::ComponentFunc(func) => add(&func, name),
                ComponentItem::ComponentInstance(instance) => {
                    for (inner, item) in instance.exports(&engine) {
                        if let ComponentItem::ComponentFunc(func) = item.ty {
                            add(&func, inner);
                        }
                    }
                }
                _ => {}
            }
        }
        assert!(types.len() >= 8, "plain-exports has lost parameters");
        types
    })
}

/// A small deterministic generator (xorshift), seeded by proptest.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// A JSON value that fits `ty`.
fn fitting(ty: &Type, rng: &mut Rng) -> Value {
    match ty {
        Type::Bool => json!(rng.below(2) == 1),
        Type::U8 => json!(rng.below(256)),
        Type::U16 => json!(rng.below(65_536)),
        Type::S8 | Type::S16 | Type::S32 | Type::S64 => json!(rng.below(200) as i64 - 100),
        Type::U32 | Type::U64 => json!(rng.next() % 1_000_000),
        Type::Float32 | Type::Float64 => json!((rng.below(20_000) as f64 - 10_000.0) / 8.0),
        Type::Char => json!(["a", "é", "字", "🦀"][rng.below(4)]),
        Type::String => json!(["", "text", "ünïcode", "a\"b"][rng.below(4)]),
        Type::List(list) => Value::Array(
            (0..rng.below(4))
                .map(|_| fitting(&list.ty(), rng))
                .collect(),
        ),
        Type::Record(record) => Value::Object(
            record
                .fields()
                .map(|f| (f.name.to_owned(), fitting(&f.ty, rng)))
                .collect(),
        ),
        Type::Tuple(tuple) => Value::Array(tuple.types().map(|t| fitting(&t, rng)).collect()),
        Type::Variant(variant) => {
            let cases: Vec<_> = variant.cases().collect();
            let case = &cases[rng.below(cases.len())];
            match &case.ty {
                Some(ty) => json!({ "tag": case.name, "val": fitting(ty, rng) }),
                None => json!({ "tag": case.name }),
            }
        }
        Type::Enum(names) => {
            let names: Vec<_> = names.names().collect();
            json!(names[rng.below(names.len())])
        }
        Type::Option(option) => {
            if rng.below(3) == 0 {
                Value::Null
            } else {
                fitting(&option.ty(), rng)
            }
        }
        Type::Flags(flags) => {
            let mut set = serde_json::Map::new();
            for name in flags.names() {
                if rng.below(2) == 1 {
                    set.insert(name.to_owned(), json!(rng.below(2) == 1));
                }
            }
            Value::Object(set)
        }
        Type::Result(result) => match (rng.below(2), result.ok(), result.err()) {
            (0, Some(ok), _) => json!({ "ok": fitting(&ok, rng) }),
            (0, None, _) => json!({ "ok": null }),
            (_, _, Some(err)) => json!({ "err": fitting(&err, rng) }),
            (_, _, None) => json!({ "err": null }),
        },
        _ => Value::Null,
    }
}

/// What a mutation puts in place of a value.
fn stray(rng: &mut Rng) -> Value {
    [
        Value::Null,
        json!(true),
        json!(-1),
        json!(256),
        json!(65_536),
        json!(3.0),
        json!(2.5),
        json!(1e39),
        json!(""),
        json!("ab"),
        json!("square-feet"),
        json!([]),
        json!({}),
        json!({ "tag": "circle" }),
        json!({ "ok": 1, "err": "x" }),
        json!([1.0, 2.0]),
    ][rng.below(16)]
    .clone()
}

/// How many values `value` holds, itself included.
fn count(value: &Value) -> usize {
    1 + match value {
        Value::Array(items) => items.iter().map(count).sum(),
        Value::Object(map) => map.values().map(count).sum(),
        _ => 0,
    }
}

/// Mutates the `target`-th value of `value` (in pre-order): replaces it,
/// or in an object drops or adds a key.
fn mutate(value: &mut Value, target: &mut usize, rng: &mut Rng) {
    if *target == 0 {
        match (value.as_object_mut(), rng.below(3)) {
            (Some(map), 0) if !map.is_empty() => {
                let key = map
                    .keys()
                    .nth(rng.below(map.len()))
                    .cloned()
                    .unwrap_or_default();
                map.remove(&key);
            }
            (Some(map), 1) => {
                map.insert(
                    ["zz", "val", "tag", "ok", "area"][rng.below(5)].to_owned(),
                    stray(rng),
                );
            }
            _ => *value = stray(rng),
        }
        *target = usize::MAX;
        return;
    }
    *target -= 1;
    match value {
        Value::Array(items) => {
            for item in items {
                if *target == usize::MAX {
                    return;
                }
                mutate(item, target, rng);
            }
        }
        Value::Object(map) => {
            for item in map.values_mut() {
                if *target == usize::MAX {
                    return;
                }
                mutate(item, target, rng);
            }
        }
        _ => {}
    }
}

fn cases() -> ProptestConfig {
    let cases = std::env::var("STOCKADE_FUZZ_CASES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(512);
    ProptestConfig {
        cases,
        ..ProptestConfig::default()
    }
}

proptest! {
    #![proptest_config(cases())]

    /// The schema and the converter agree, errors name a field, and what
    /// converts round-trips.
    #[test]
    fn schema_and_conversion_agree(which in any::<usize>(), seed in 1u64.., mutations in 0usize..3) {
        let types = parameter_types();
        let (name, ty) = &types[which % types.len()];
        let mut rng = Rng(seed);
        let mut value = fitting(ty, &mut rng);
        for _ in 0..mutations {
            let mut target = rng.below(count(&value));
            mutate(&mut value, &mut target, &mut rng);
        }
        let schema = schema_of(ty).expect("plain-exports' types all have a schema");
        let valid = jsonschema::is_valid(&schema, &value);
        let converted = to_val(&value, ty, "arg");
        match &converted {
            Ok(val) => {
                prop_assert!(valid, "{name}: converted {value} that the schema refuses");
                let back = to_json(val);
                let again = to_val(&back, ty, "arg").map(|v: Val| to_json(&v));
                prop_assert_eq!(again.ok(), Some(back), "{}: no round trip for {}", name, value);
            }
            Err(err) => {
                prop_assert!(!valid, "{name}: refused {value} that the schema accepts: {err}");
                prop_assert!(err.to_string().starts_with("`arg"), "{name}: {err} names no field");
            }
        }
    }
}

/// The generator itself makes values that the schema accepts and that
/// convert, so the property above starts from fitting values.
#[test]
fn fitting_values_fit() {
    for (name, ty) in parameter_types() {
        for seed in 1..50 {
            let value = fitting(ty, &mut Rng(seed));
            let schema = schema_of(ty).expect("a schema");
            assert!(jsonschema::is_valid(&schema, &value), "{name}: {value}");
            assert!(to_val(&value, ty, "arg").is_ok(), "{name}: {value}");
        }
    }
}
