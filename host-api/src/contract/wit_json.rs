//! WIT values as JSON, for components whose exported functions are tools:
//! the JSON Schema of a WIT type, JSON arguments into WIT values (errors
//! name the field, e.g. `config.items[2].port`), and WIT results back into
//! JSON. The shapes follow Wassette's so components move between the two
//! hosts unchanged: records are objects, variants `{"tag", "val"}`, enums
//! strings, options `null` or the value, results `{"ok"}` / `{"err"}`,
//! flags objects of booleans, tuples fixed-length arrays.

use serde_json::{Map, Value, json};
use wasmtime::component::Val;
use wasmtime::component::types::Type;

/// A WIT type with no JSON form here.
#[derive(Debug, thiserror::Error)]
#[error("{what} has no JSON form")]
pub(crate) struct Unsupported {
    /// What the type is, e.g. `a resource`.
    pub what: &'static str,
}

/// A JSON value that does not fit the WIT type it is for.
#[derive(Debug, thiserror::Error)]
#[error("`{path}`: {problem}")]
pub(crate) struct Mismatch {
    /// Where the value is: argument name, then `.field` and `[index]`.
    pub path: String,
    /// What was expected, and what came.
    pub problem: String,
}

fn mismatch(path: &str, problem: impl Into<String>) -> Mismatch {
    Mismatch {
        path: path.to_owned(),
        problem: problem.into(),
    }
}

/// The JSON Schema of values of `ty`.
pub(crate) fn schema_of(ty: &Type) -> Result<Value, Unsupported> {
    Ok(match ty {
        Type::Bool => json!({ "type": "boolean" }),
        Type::S8 => integer(i8::MIN.into(), i8::MAX as u64),
        Type::U8 => integer(0, u8::MAX.into()),
        Type::S16 => integer(i16::MIN.into(), i16::MAX as u64),
        Type::U16 => integer(0, u16::MAX.into()),
        Type::S32 => integer(i32::MIN.into(), i32::MAX as u64),
        Type::U32 => integer(0, u32::MAX.into()),
        Type::S64 => integer(i64::MIN, i64::MAX as u64),
        Type::U64 => integer(0, u64::MAX),
        Type::Float32 => json!({ "type": "number", "minimum": -f32::MAX, "maximum": f32::MAX }),
        Type::Float64 => json!({ "type": "number" }),
        Type::Char => json!({ "type": "string", "minLength": 1, "maxLength": 1 }),
        Type::String => json!({ "type": "string" }),
        Type::List(list) => json!({ "type": "array", "items": schema_of(&list.ty())? }),
        Type::FixedLengthList(list) => json!({
            "type": "array",
            "items": schema_of(&list.ty())?,
            "minItems": list.len(),
            "maxItems": list.len(),
        }),
        Type::Record(record) => {
            let mut properties = Map::new();
            let mut required = Vec::new();
            for field in record.fields() {
                properties.insert(field.name.to_owned(), schema_of(&field.ty)?);
                required.push(field.name.to_owned());
            }
            json!({
                "type": "object",
                "properties": properties,
                "required": required,
                "additionalProperties": false,
            })
        }
        Type::Tuple(tuple) => {
            let items = tuple
                .types()
                .map(|t| schema_of(&t))
                .collect::<Result<Vec<_>, _>>()?;
            json!({
                "type": "array",
                "prefixItems": items,
                "items": false,
                "minItems": items.len(),
                "maxItems": items.len(),
            })
        }
        Type::Variant(variant) => {
            let mut cases = Vec::new();
            for case in variant.cases() {
                cases.push(match case.ty {
                    Some(payload) => json!({
                        "type": "object",
                        "properties": { "tag": { "const": case.name }, "val": schema_of(&payload)? },
                        "required": ["tag", "val"],
                        "additionalProperties": false,
                    }),
                    None => json!({
                        "type": "object",
                        "properties": { "tag": { "const": case.name } },
                        "required": ["tag"],
                        "additionalProperties": false,
                    }),
                });
            }
            json!({ "oneOf": cases })
        }
        Type::Enum(names) => json!({ "type": "string", "enum": names.names().collect::<Vec<_>>() }),
        Type::Option(option) => json!({ "anyOf": [{ "type": "null" }, schema_of(&option.ty())?] }),
        Type::Result(result) => {
            let side = |ty: Option<Type>| match ty {
                Some(ty) => schema_of(&ty),
                None => Ok(json!({ "type": "null" })),
            };
            json!({ "oneOf": [
                { "type": "object", "properties": { "ok": side(result.ok())? }, "required": ["ok"], "additionalProperties": false },
                { "type": "object", "properties": { "err": side(result.err())? }, "required": ["err"], "additionalProperties": false },
            ] })
        }
        Type::Flags(flags) => {
            let properties: Map<String, Value> = flags
                .names()
                .map(|name| (name.to_owned(), json!({ "type": "boolean" })))
                .collect();
            json!({ "type": "object", "properties": properties, "additionalProperties": false })
        }
        Type::Map(_) => return Err(Unsupported { what: "a map" }),
        Type::Own(_) | Type::Borrow(_) => return Err(Unsupported { what: "a resource" }),
        Type::Future(_) => return Err(Unsupported { what: "a future" }),
        Type::Stream(_) => return Err(Unsupported { what: "a stream" }),
        Type::ErrorContext => {
            return Err(Unsupported {
                what: "an error-context",
            });
        }
    })
}

fn integer(minimum: i64, maximum: u64) -> Value {
    json!({ "type": "integer", "minimum": minimum, "maximum": maximum })
}

/// The WIT value of type `ty` that `value` stands for; `path` names it in
/// errors.
pub(crate) fn to_val(value: &Value, ty: &Type, path: &str) -> Result<Val, Mismatch> {
    Ok(match ty {
        Type::Bool => {
            Val::Bool(value.as_bool().ok_or_else(|| {
                mismatch(path, format!("expected a boolean, got {}", kind(value)))
            })?)
        }
        Type::S8 => Val::S8(int(value, path)?),
        Type::U8 => Val::U8(int(value, path)?),
        Type::S16 => Val::S16(int(value, path)?),
        Type::U16 => Val::U16(int(value, path)?),
        Type::S32 => Val::S32(int(value, path)?),
        Type::U32 => Val::U32(int(value, path)?),
        Type::S64 => Val::S64(int(value, path)?),
        Type::U64 => Val::U64(int(value, path)?),
        Type::Float32 => {
            let wide = float(value, path)?;
            if wide.abs() > f64::from(f32::MAX) {
                return Err(mismatch(path, format!("{wide} is out of range for f32")));
            }
            Val::Float32(wide as f32)
        }
        Type::Float64 => Val::Float64(float(value, path)?),
        Type::Char => {
            let text = string(value, path)?;
            let mut chars = text.chars();
            match (chars.next(), chars.next()) {
                (Some(c), None) => Val::Char(c),
                _ => return Err(mismatch(path, "expected exactly one character")),
            }
        }
        Type::String => Val::String(string(value, path)?.to_owned()),
        Type::List(list) => Val::List(items(value, &list.ty(), path)?),
        Type::FixedLengthList(list) => {
            let items = items(value, &list.ty(), path)?;
            if items.len() != list.len() as usize {
                return Err(mismatch(
                    path,
                    format!("expected {} items, got {}", list.len(), items.len()),
                ));
            }
            Val::FixedLengthList(items)
        }
        Type::Record(record) => {
            let object = object(value, path)?;
            let mut fields = Vec::new();
            for field in record.fields() {
                let inner = format!("{path}.{}", field.name);
                let given = object
                    .get(field.name)
                    .ok_or_else(|| mismatch(&inner, "is required"))?;
                fields.push((field.name.to_owned(), to_val(given, &field.ty, &inner)?));
            }
            if let Some(extra) = object
                .keys()
                .find(|k| !record.fields().any(|f| f.name == k.as_str()))
            {
                return Err(mismatch(
                    &format!("{path}.{extra}"),
                    "is not a field of this record",
                ));
            }
            Val::Record(fields)
        }
        Type::Tuple(tuple) => {
            let array = value
                .as_array()
                .ok_or_else(|| mismatch(path, format!("expected an array, got {}", kind(value))))?;
            if array.len() != tuple.types().len() {
                return Err(mismatch(
                    path,
                    format!(
                        "expected {} items, got {}",
                        tuple.types().len(),
                        array.len()
                    ),
                ));
            }
            let mut vals = Vec::new();
            for (index, (item, ty)) in array.iter().zip(tuple.types()).enumerate() {
                vals.push(to_val(item, &ty, &format!("{path}[{index}]"))?);
            }
            Val::Tuple(vals)
        }
        Type::Variant(variant) => {
            let object = object(value, path)?;
            let tag = object
                .get("tag")
                .and_then(Value::as_str)
                .ok_or_else(|| mismatch(path, "expected {\"tag\": case, \"val\": payload}"))?;
            let case = variant.cases().find(|c| c.name == tag).ok_or_else(|| {
                let names: Vec<_> = variant.cases().map(|c| c.name.to_owned()).collect();
                mismatch(path, format!("`{tag}` is not one of {}", names.join(", ")))
            })?;
            if let Some(extra) = object.keys().find(|k| *k != "tag" && *k != "val") {
                return Err(mismatch(
                    &format!("{path}.{extra}"),
                    "is not part of a variant",
                ));
            }
            let payload = match (case.ty, object.get("val")) {
                (Some(ty), Some(val)) => Some(Box::new(to_val(val, &ty, &format!("{path}.val"))?)),
                (Some(_), None) => return Err(mismatch(&format!("{path}.val"), "is required")),
                (None, None) => None,
                (None, Some(_)) => {
                    return Err(mismatch(path, format!("case `{tag}` carries no value")));
                }
            };
            Val::Variant(tag.to_owned(), payload)
        }
        Type::Enum(names) => {
            let name = string(value, path)?;
            if !names.names().any(|n| n == name) {
                let all: Vec<_> = names.names().collect();
                return Err(mismatch(
                    path,
                    format!("`{name}` is not one of {}", all.join(", ")),
                ));
            }
            Val::Enum(name.to_owned())
        }
        Type::Option(option) => match value {
            Value::Null => Val::Option(None),
            some => Val::Option(Some(Box::new(to_val(some, &option.ty(), path)?))),
        },
        Type::Result(result) => {
            let object = object(value, path)?;
            let side = |ty: Option<Type>, given: &Value, inner: &str| match ty {
                Some(ty) => to_val(given, &ty, inner).map(|v| Some(Box::new(v))),
                None => Ok(None),
            };
            if object.len() != 1 {
                return Err(mismatch(
                    path,
                    "expected {\"ok\": value} or {\"err\": value}",
                ));
            }
            match (object.get("ok"), object.get("err")) {
                (Some(ok), None) => Val::Result(Ok(side(result.ok(), ok, &format!("{path}.ok"))?)),
                (None, Some(err)) => {
                    Val::Result(Err(side(result.err(), err, &format!("{path}.err"))?))
                }
                _ => {
                    return Err(mismatch(
                        path,
                        "expected {\"ok\": value} or {\"err\": value}",
                    ));
                }
            }
        }
        Type::Flags(flags) => {
            let object = object(value, path)?;
            let mut set = Vec::new();
            for (name, on) in object {
                if !flags.names().any(|n| n == name) {
                    return Err(mismatch(
                        &format!("{path}.{name}"),
                        "is not a flag of this type",
                    ));
                }
                match on {
                    Value::Bool(true) => set.push(name.clone()),
                    Value::Bool(false) => {}
                    other => {
                        return Err(mismatch(
                            &format!("{path}.{name}"),
                            format!("expected a boolean, got {}", kind(other)),
                        ));
                    }
                }
            }
            Val::Flags(set)
        }
        Type::Map(_)
        | Type::Own(_)
        | Type::Borrow(_)
        | Type::Future(_)
        | Type::Stream(_)
        | Type::ErrorContext => return Err(mismatch(path, "this type has no JSON form")),
    })
}

/// The JSON form of a WIT value.
pub(crate) fn to_json(val: &Val) -> Value {
    match val {
        Val::Bool(b) => json!(b),
        Val::S8(n) => json!(n),
        Val::U8(n) => json!(n),
        Val::S16(n) => json!(n),
        Val::U16(n) => json!(n),
        Val::S32(n) => json!(n),
        Val::U32(n) => json!(n),
        Val::S64(n) => json!(n),
        Val::U64(n) => json!(n),
        // NaN and the infinities have no JSON number: they become null.
        Val::Float32(f) => json!(f),
        Val::Float64(f) => json!(f),
        Val::Char(c) => json!(c.to_string()),
        Val::String(s) => json!(s),
        Val::List(items) | Val::Tuple(items) | Val::FixedLengthList(items) => {
            Value::Array(items.iter().map(to_json).collect())
        }
        Val::Record(fields) => Value::Object(
            fields
                .iter()
                .map(|(name, v)| (name.clone(), to_json(v)))
                .collect(),
        ),
        Val::Variant(tag, payload) => match payload {
            Some(v) => json!({ "tag": tag, "val": to_json(v) }),
            None => json!({ "tag": tag }),
        },
        Val::Enum(name) => json!(name),
        Val::Option(inner) => inner.as_deref().map_or(Value::Null, to_json),
        Val::Result(Ok(inner)) => json!({ "ok": inner.as_deref().map_or(Value::Null, to_json) }),
        Val::Result(Err(inner)) => json!({ "err": inner.as_deref().map_or(Value::Null, to_json) }),
        Val::Flags(set) => {
            Value::Object(set.iter().map(|name| (name.clone(), json!(true))).collect())
        }
        Val::Map(_) | Val::Resource(_) | Val::Future(_) | Val::Stream(_) | Val::ErrorContext(_) => {
            Value::Null
        }
    }
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// An integer, as JSON Schema counts them: `3` and `3.0` alike.
fn int<T: TryFrom<i128>>(value: &Value, path: &str) -> Result<T, Mismatch> {
    let whole = value
        .as_i64()
        .map(i128::from)
        .or_else(|| value.as_u64().map(i128::from))
        .or_else(|| {
            value
                .as_f64()
                .filter(|f| f.fract() == 0.0 && f.abs() < 1e38)
                .map(|f| f as i128)
        })
        .ok_or_else(|| mismatch(path, format!("expected an integer, got {}", kind(value))))?;
    T::try_from(whole).map_err(|_| {
        mismatch(
            path,
            format!("{whole} is out of range for this integer type"),
        )
    })
}

fn float(value: &Value, path: &str) -> Result<f64, Mismatch> {
    value
        .as_f64()
        .ok_or_else(|| mismatch(path, format!("expected a number, got {}", kind(value))))
}

fn string<'a>(value: &'a Value, path: &str) -> Result<&'a str, Mismatch> {
    value
        .as_str()
        .ok_or_else(|| mismatch(path, format!("expected a string, got {}", kind(value))))
}

fn object<'a>(value: &'a Value, path: &str) -> Result<&'a Map<String, Value>, Mismatch> {
    value
        .as_object()
        .ok_or_else(|| mismatch(path, format!("expected an object, got {}", kind(value))))
}

fn items(value: &Value, ty: &Type, path: &str) -> Result<Vec<Val>, Mismatch> {
    let array = value
        .as_array()
        .ok_or_else(|| mismatch(path, format!("expected an array, got {}", kind(value))))?;
    array
        .iter()
        .enumerate()
        .map(|(index, item)| to_val(item, ty, &format!("{path}[{index}]")))
        .collect()
}
