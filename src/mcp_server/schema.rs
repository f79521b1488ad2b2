//! The tools' JSON Schemas as any JSON Schema 2020-12 validator reads them.
//!
//! Three things separate schemars' output from what a client's validator expects:
//! - schemars writes Rust's integer and float types as `format` (`uint16`, `int64`, `double`),
//!   which are not JSON Schema formats: validators warn and ignore them (the TypeScript SDK's
//!   Ajv prints `unknown format "uint64" ignored`). Each becomes the bounds it stands for.
//! - The CRD types carry Kubernetes' extensions (`x-kubernetes-validations` with CEL rules,
//!   `x-kubernetes-list-type`), which a strict validator refuses as unknown keywords and no MCP
//!   client acts on. They are dropped here; the tools enforce the same rules when they validate.
//! - A failed call is a tool result whose `structuredContent` is a [`ToolFailure`], and clients
//!   validate every `structuredContent` against the tool's `outputSchema` (the TypeScript SDK
//!   does so even when `isError` is set), so a tool's output schema admits both.

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::sync::{Arc, LazyLock, PoisonError, RwLock};

use rmcp::handler::server::common::{schema_for_input, schema_for_output};
use rmcp::model::JsonObject;
use schemars::JsonSchema;
use serde_json::{Map, Value, json};

use super::error::ToolFailure;
use crate::api::schema::strip_keywords;

/// The formats of JSON Schema 2020-12 (§7.3), the only ones a validator is expected to know.
pub const STANDARD_FORMATS: &[&str] = &[
    "date-time",
    "date",
    "time",
    "duration",
    "email",
    "idn-email",
    "hostname",
    "idn-hostname",
    "ipv4",
    "ipv6",
    "uri",
    "uri-reference",
    "iri",
    "iri-reference",
    "uuid",
    "uri-template",
    "json-pointer",
    "relative-json-pointer",
    "regex",
];

/// The prefix of Kubernetes' OpenAPI extensions (`x-kubernetes-validations`, …).
const KUBERNETES_EXTENSION: &str = "x-kubernetes-";

/// Schemas already made, by purpose and type. rmcp's `#[tool_handler]` builds the tool router
/// (and so every tool's schemas) again for each `tools/call` and `tools/list`; rmcp caches its
/// own schemas, and these are cached alike so that no call walks them again.
type Cache = LazyLock<RwLock<HashMap<TypeId, Arc<JsonObject>>>>;
static INPUTS: Cache = LazyLock::new(Default::default);
static OUTPUTS: Cache = LazyLock::new(Default::default);

/// `cache`'s schema of `T`, made by `make` the first time.
fn cached<T: Any>(cache: &Cache, make: impl FnOnce() -> Arc<JsonObject>) -> Arc<JsonObject> {
    let id = TypeId::of::<T>();
    // A schema is inserted whole or not at all: a poisoned lock is still safe to use.
    if let Some(found) = cache
        .read()
        .unwrap_or_else(PoisonError::into_inner)
        .get(&id)
    {
        return found.clone();
    }
    let made = make();
    cache
        .write()
        .unwrap_or_else(PoisonError::into_inner)
        .entry(id)
        .or_insert(made)
        .clone()
}

/// The input schema of a tool taking `T`, with standard formats only.
///
/// # Panics
/// When `T`'s schema is not an object schema: a programming error, found by the first
/// `tools/list` (and by the unit tests).
#[allow(clippy::expect_used)] // the schema of a type is fixed at compile time
pub fn input<T: JsonSchema + Any>() -> Arc<JsonObject> {
    cached::<T>(&INPUTS, || {
        let schema = schema_for_input::<T>().expect("a tool's input is an object");
        let mut value = Value::Object(schema.as_ref().clone());
        standardize(&mut value);
        Arc::new(into_object(value))
    })
}

/// The output schema of a tool answering `T`: `T` or a [`ToolFailure`], standard formats only.
pub fn output<T: JsonSchema + Any>() -> Arc<JsonObject> {
    cached::<T>(&OUTPUTS, output_uncached::<T>)
}

fn output_uncached<T: JsonSchema + Any>() -> Arc<JsonObject> {
    let mut success = schema_for_output::<T>().as_ref().clone();
    let mut failure = schema_for_output::<ToolFailure>().as_ref().clone();
    let mut defs = Map::new();
    for part in [&mut success, &mut failure] {
        part.remove("$schema");
        if let Some(Value::Object(more)) = part.remove("$defs") {
            defs.extend(more);
        }
    }
    let mut value = json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "object",
        "anyOf": [success, failure],
    });
    if !defs.is_empty() {
        value["$defs"] = Value::Object(defs);
    }
    standardize(&mut value);
    Arc::new(into_object(value))
}

fn into_object(value: Value) -> JsonObject {
    match value {
        Value::Object(object) => object,
        _ => JsonObject::new(),
    }
}

/// Replaces every `format` that is not a standard one by the bounds it stands for (an
/// unknown format constrains nothing in a validator, so dropping one never refuses a value
/// the schema accepted before), and drops Kubernetes' `x-kubernetes-*` extensions.
pub fn standardize(value: &mut Value) {
    strip_keywords(value, &|key| key.starts_with(KUBERNETES_EXTENSION));
    standard_formats(value);
}

fn standard_formats(value: &mut Value) {
    match value {
        Value::Object(object) => {
            let nonstandard = object
                .get("format")
                .and_then(Value::as_str)
                .filter(|f| !STANDARD_FORMATS.contains(f))
                .map(str::to_owned);
            if let Some(format) = nonstandard {
                object.remove("format");
                for (key, bound) in bounds(&format) {
                    object.entry(key).or_insert(bound);
                }
            }
            object.values_mut().for_each(standard_formats);
        }
        Value::Array(items) => items.iter_mut().for_each(standard_formats),
        _ => {}
    }
}

/// The range a schemars number format names; none for the unbounded ones (`int64`'s and
/// `uint64`'s limits are beyond a JSON number's exact range, `double` and `float` are JSON
/// numbers).
fn bounds(format: &str) -> Vec<(String, Value)> {
    let range = |min: i64, max: i64| {
        vec![
            ("minimum".into(), json!(min)),
            ("maximum".into(), json!(max)),
        ]
    };
    match format {
        "uint8" => range(0, u8::MAX.into()),
        "uint16" => range(0, u16::MAX.into()),
        "uint32" => range(0, u32::MAX.into()),
        "int8" => range(i8::MIN.into(), i8::MAX.into()),
        "int16" => range(i16::MIN.into(), i16::MAX.into()),
        "int32" => range(i32::MIN.into(), i32::MAX.into()),
        "uint64" | "uint" => vec![("minimum".into(), json!(0))],
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every format and every Kubernetes extension keyword in `value`.
    fn formats(value: &Value, found: &mut Vec<String>) {
        match value {
            Value::Object(object) => {
                if let Some(Value::String(f)) = object.get("format") {
                    found.push(f.clone());
                }
                found.extend(
                    object
                        .keys()
                        .filter(|k| k.starts_with(KUBERNETES_EXTENSION))
                        .cloned(),
                );
                object.values().for_each(|v| formats(v, found));
            }
            Value::Array(items) => items.iter().for_each(|v| formats(v, found)),
            _ => {}
        }
    }

    #[test]
    fn a_rust_integer_format_becomes_its_bounds_and_a_standard_one_stays() {
        let mut schema = json!({
            "properties": {
                "port": {"type": "integer", "format": "uint16", "minimum": 1},
                "latencyMs": {"type": "integer", "format": "uint64"},
                "ratio": {"type": "number", "format": "double"},
                "at": {"type": "string", "format": "date-time"},
                "url": {"type": "string", "x-kubernetes-validations": [{"rule": "self != ''"}]},
            },
            "x-kubernetes-list-type": "map",
        });
        standardize(&mut schema);
        assert_eq!(
            schema["properties"],
            json!({
                "port": {"type": "integer", "minimum": 1, "maximum": 65535},
                "latencyMs": {"type": "integer", "minimum": 0},
                "ratio": {"type": "number"},
                "at": {"type": "string", "format": "date-time"},
                "url": {"type": "string"},
            })
        );
        assert_eq!(schema.get("x-kubernetes-list-type"), None);
    }

    #[test]
    fn a_schema_is_made_once_per_type() {
        let first = output::<crate::mcp_server::view::DeleteResult>();
        let again = output::<crate::mcp_server::view::DeleteResult>();
        assert!(Arc::ptr_eq(&first, &again));
        assert!(!Arc::ptr_eq(
            &first,
            &output::<crate::mcp_server::view::TestResult>()
        ));
    }

    #[test]
    fn every_tool_schema_uses_standard_keywords_and_formats_and_outputs_admit_the_failure() {
        use crate::mcp_server::tools::ManagementTools;
        let tools = ManagementTools::tool_router().list_all();
        assert_eq!(tools.len(), 6);
        for tool in tools {
            let output = tool.output_schema.clone().unwrap_or_default();
            let mut found = Vec::new();
            formats(
                &Value::Object(tool.input_schema.as_ref().clone()),
                &mut found,
            );
            formats(&Value::Object(output.as_ref().clone()), &mut found);
            found.retain(|f| !STANDARD_FORMATS.contains(&f.as_str()));
            assert!(found.is_empty(), "{}: formats {found:?}", tool.name);
            assert_eq!(output.get("type"), Some(&json!("object")), "{}", tool.name);
            let variants = output["anyOf"].as_array().map_or(0, Vec::len);
            assert_eq!(variants, 2, "{}: {output:?}", tool.name);
        }
    }
}
