//! Schema-driven rendering of one encoded message into the JSON Kubernetes would produce for it.
//!
//! Rules (mirroring Go's `encoding/json` over the k8s.io/api structs):
//! * scalars: zero values are omitted unless [`presence::keeps_zero`] says the field is a Go pointer;
//! * nested messages are always kept, even empty (`"strategy": {}`, `"resources": {}`);
//! * repeated fields and maps appear only when non-empty; `bytes` become base64 strings;
//! * well-known wrappers: `Time` → RFC 3339 seconds, `MicroTime` → RFC 3339 microseconds (both omitted when zero),
//!   `IntOrString` → number or string, `Quantity` → string, `FieldsV1`/`RawExtension` → embedded JSON.

use base64::Engine as _;
use serde_json::{Map, Number, Value};

use crate::DecodeError;
use crate::presence::keeps_zero;
use crate::schema::{FieldType, Schema};
use crate::wire::{Reader, WireValue};

const TIME: &str = "apimachinery.pkg.apis.meta.v1.Time";
const MICRO_TIME: &str = "apimachinery.pkg.apis.meta.v1.MicroTime";
const INT_OR_STRING: &str = "apimachinery.pkg.util.intstr.IntOrString";
const QUANTITY: &str = "apimachinery.pkg.api.resource.Quantity";
const FIELDS_V1: &str = "apimachinery.pkg.apis.meta.v1.FieldsV1";
const RAW_EXTENSION: &str = "apimachinery.pkg.runtime.RawExtension";

/// Deeper nesting than any Kubernetes object has; guards the recursion against hostile input.
const MAX_DEPTH: usize = 64;

/// Renders the message `name` encoded in `bytes`. `None` means "omit" (a zero `Time`, an empty `RawExtension`).
pub fn render(schema: &Schema, name: &str, bytes: &[u8]) -> Result<Option<Value>, DecodeError> {
    Renderer { schema }.message(name, bytes, 0)
}

struct Renderer<'s> {
    schema: &'s Schema,
}

impl Renderer<'_> {
    fn message(&self, name: &str, bytes: &[u8], depth: usize) -> Result<Option<Value>, DecodeError> {
        if depth > MAX_DEPTH {
            return Err(DecodeError::TooDeep);
        }
        match name {
            TIME | MICRO_TIME => return time(name, bytes),
            INT_OR_STRING => return int_or_string(bytes).map(Some),
            QUANTITY => {
                let s = string_field(name, bytes, 1)?;
                return Ok(Some(Value::String(if s.is_empty() { "0".into() } else { s })));
            }
            FIELDS_V1 | RAW_EXTENSION => return raw_json(name, bytes),
            _ => {}
        }
        let message = self.schema.message(name).ok_or_else(|| DecodeError::Schema(format!("no message {name}")))?;
        let mut out = Map::new();
        let mut reader = Reader::new(bytes);
        while let Some((number, value)) = next(&mut reader, name)? {
            // Unknown fields (newer Kubernetes) are skipped, as Go's decoder does.
            let Some(field) = message.fields.get(&number) else { continue };
            let at = || format!("{name}.{}", field.json);
            if let FieldType::Map(value_ty) = &field.ty {
                let (key, entry) = self.map_entry(value_ty, value, &at(), depth)?;
                if let Value::Object(map) = out.entry(field.json.clone()).or_insert_with(|| Value::Object(Map::new())) {
                    map.insert(key, entry);
                }
            } else if field.repeated {
                let items = self.repeated(&field.ty, value, &at(), depth)?;
                if let Value::Array(list) = out.entry(field.json.clone()).or_insert_with(|| Value::Array(Vec::new())) {
                    list.extend(items);
                }
            } else {
                match self.single(&field.ty, value, &at(), depth)? {
                    Some(v) if !is_zero(&field.ty, &v) || keeps_zero(name, &field.json) => {
                        merge_into(&mut out, &field.json, v);
                    }
                    _ => {
                        out.remove(&field.json);
                    }
                }
            }
        }
        // Packed repeated fields with no elements leave an empty array behind; Go omits those.
        out.retain(|_, v| !matches!(v, Value::Array(a) if a.is_empty()));
        Ok(Some(Value::Object(out)))
    }

    fn single(&self, ty: &FieldType, value: WireValue, at: &str, depth: usize) -> Result<Option<Value>, DecodeError> {
        let mismatch = |expected: &'static str| DecodeError::WireTypeMismatch {
            field: at.to_string(),
            expected,
            found: value.kind(),
        };
        Ok(Some(match (ty, value) {
            (FieldType::String, WireValue::Bytes(b)) => Value::String(String::from_utf8_lossy(b).into_owned()),
            (FieldType::Bytes, WireValue::Bytes(b)) => {
                Value::String(base64::engine::general_purpose::STANDARD.encode(b))
            }
            // int32 is sign-extended to 64 bits on the wire; truncating recovers negative values.
            (FieldType::Int32, WireValue::Varint(v)) => Value::from(v as i64 as i32),
            (FieldType::Int64, WireValue::Varint(v)) => Value::from(v as i64),
            (FieldType::Bool, WireValue::Varint(v)) => Value::Bool(v != 0),
            (FieldType::Double, WireValue::Fixed64(v)) => {
                Number::from_f64(f64::from_bits(v)).map(Value::Number).unwrap_or(Value::Null)
            }
            (FieldType::Message(name), WireValue::Bytes(b)) => return self.message(name, b, depth + 1),
            (FieldType::Double, _) => return Err(mismatch("fixed64")),
            (FieldType::Int32 | FieldType::Int64 | FieldType::Bool, _) => return Err(mismatch("varint")),
            _ => return Err(mismatch("length-delimited")),
        }))
    }

    /// One occurrence of a repeated field: a single element, or a packed run of numbers.
    fn repeated(&self, ty: &FieldType, value: WireValue, at: &str, depth: usize) -> Result<Vec<Value>, DecodeError> {
        let packed = matches!(ty, FieldType::Int32 | FieldType::Int64 | FieldType::Bool | FieldType::Double);
        match value {
            WireValue::Bytes(bytes) if packed && *ty == FieldType::Double => {
                let chunks = bytes.chunks_exact(8);
                if !chunks.remainder().is_empty() {
                    return Err(wire(at, crate::wire::WireError::Truncated));
                }
                let mut items = Vec::new();
                for chunk in chunks {
                    let mut raw = [0u8; 8];
                    raw.copy_from_slice(chunk);
                    items.extend(self.single(ty, WireValue::Fixed64(u64::from_le_bytes(raw)), at, depth)?);
                }
                Ok(items)
            }
            WireValue::Bytes(bytes) if packed => {
                let mut reader = Reader::new(bytes);
                let mut items = Vec::new();
                while !reader.is_empty() {
                    let element = WireValue::Varint(reader.varint().map_err(|source| wire(at, source))?);
                    items.extend(self.single(ty, element, at, depth)?);
                }
                Ok(items)
            }
            _ => Ok(vec![self.single(ty, value, at, depth)?.unwrap_or(Value::Null)]),
        }
    }

    /// One `map<string, V>` entry: a message with key = 1 and value = 2.
    fn map_entry(
        &self,
        value_ty: &FieldType,
        value: WireValue,
        at: &str,
        depth: usize,
    ) -> Result<(String, Value), DecodeError> {
        let WireValue::Bytes(bytes) = value else {
            return Err(DecodeError::WireTypeMismatch {
                field: at.to_string(),
                expected: "length-delimited",
                found: value.kind(),
            });
        };
        let (mut key, mut entry) = (String::new(), None);
        let mut reader = Reader::new(bytes);
        while let Some((number, v)) = next(&mut reader, at)? {
            match number {
                1 => key = self.single(&FieldType::String, v, at, depth)?.and_then(as_string).unwrap_or_default(),
                2 => entry = self.single(value_ty, v, at, depth)?,
                _ => {}
            }
        }
        let entry = match (entry, value_ty) {
            (Some(v), _) => v,
            (None, FieldType::Message(name)) => self.message(name, &[], depth + 1)?.unwrap_or(Value::Null),
            (None, _) => Value::String(String::new()),
        };
        Ok((key, entry))
    }
}

fn next<'a>(reader: &mut Reader<'a>, at: &str) -> Result<Option<(u32, WireValue<'a>)>, DecodeError> {
    reader.next_field().map_err(|source| wire(at, source))
}

fn wire(at: &str, source: crate::wire::WireError) -> DecodeError {
    DecodeError::Malformed { at: at.to_string(), source }
}

fn as_string(v: Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s),
        _ => None,
    }
}

/// Zero values of scalars (and of a non-pointer `IntOrString`), which Go's `omitempty` drops.
fn is_zero(ty: &FieldType, v: &Value) -> bool {
    let scalar_or_int_or_string = match ty {
        FieldType::Message(name) => name == INT_OR_STRING,
        _ => true,
    };
    scalar_or_int_or_string
        && match v {
            Value::String(s) => s.is_empty(),
            Value::Number(n) => n.as_f64() == Some(0.0),
            Value::Bool(b) => !b,
            _ => false,
        }
}

/// Proto2 semantics for a repeated occurrence of a singular field: messages merge, scalars are replaced.
fn merge_into(out: &mut Map<String, Value>, key: &str, value: Value) {
    match (out.get_mut(key), value) {
        (Some(Value::Object(old)), Value::Object(new)) => {
            for (k, v) in new {
                merge_into(old, &k, v);
            }
        }
        (_, value) => {
            out.insert(key.to_string(), value);
        }
    }
}

/// Reads string field `number` of a small wrapper message.
fn string_field(name: &str, bytes: &[u8], number: u32) -> Result<String, DecodeError> {
    let mut reader = Reader::new(bytes);
    let mut out = String::new();
    while let Some((n, v)) = next(&mut reader, name)? {
        if let (true, WireValue::Bytes(b)) = (n == number, v) {
            out = String::from_utf8_lossy(b).into_owned();
        }
    }
    Ok(out)
}

/// Reads the varint fields of a small wrapper message as `(number, value)`.
fn varints(name: &str, bytes: &[u8]) -> Result<Vec<(u32, u64)>, DecodeError> {
    let mut reader = Reader::new(bytes);
    let mut out = Vec::new();
    while let Some((n, v)) = next(&mut reader, name)? {
        if let WireValue::Varint(v) = v {
            out.push((n, v));
        }
    }
    Ok(out)
}

/// `Time`/`MicroTime {seconds = 1, nanos = 2}`. An empty message is Go's zero time, which Kubernetes prints as
/// `null`; it is omitted here.
fn time(name: &str, bytes: &[u8]) -> Result<Option<Value>, DecodeError> {
    if bytes.is_empty() {
        return Ok(None);
    }
    let (mut seconds, mut nanos) = (0i64, 0u32);
    for (n, v) in varints(name, bytes)? {
        match n {
            1 => seconds = v as i64,
            2 => nanos = u32::try_from(v as i64 as i32).unwrap_or(0),
            _ => {}
        }
    }
    let at = chrono::DateTime::from_timestamp(seconds, nanos.min(999_999_999)).ok_or_else(|| {
        DecodeError::InvalidValue { at: name.to_string(), reason: format!("time {seconds}s out of range") }
    })?;
    let text = if name == MICRO_TIME {
        at.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
    } else {
        at.format("%Y-%m-%dT%H:%M:%SZ").to_string()
    };
    Ok(Some(Value::String(text)))
}

/// `IntOrString {type = 1 (0 int, 1 string), intVal = 2, strVal = 3}`.
fn int_or_string(bytes: &[u8]) -> Result<Value, DecodeError> {
    let ints = varints(INT_OR_STRING, bytes)?;
    let get = |number: u32| ints.iter().rev().find(|(n, _)| *n == number).map(|(_, v)| *v);
    if get(1) == Some(1) {
        Ok(Value::String(string_field(INT_OR_STRING, bytes, 3)?))
    } else {
        Ok(Value::from(get(2).map(|v| v as i64 as i32).unwrap_or(0)))
    }
}

/// `FieldsV1`/`RawExtension {raw = 1}` holding JSON; empty → omitted.
fn raw_json(name: &str, bytes: &[u8]) -> Result<Option<Value>, DecodeError> {
    let mut reader = Reader::new(bytes);
    let mut raw: &[u8] = &[];
    while let Some((n, v)) = next(&mut reader, name)? {
        if let (1, WireValue::Bytes(b)) = (n, v) {
            raw = b;
        }
    }
    if raw.is_empty() {
        return Ok(None);
    }
    serde_json::from_slice(raw)
        .map(Some)
        .map_err(|e| DecodeError::InvalidValue { at: name.to_string(), reason: format!("raw bytes are not JSON: {e}") })
}
