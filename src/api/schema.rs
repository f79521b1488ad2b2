//! Schema transforms for the generated CRDs.
//!
//! The API server gives every CRD a budget for the estimated cost of its CEL rules; a rule
//! under an unbounded map counts once per possible entry. Copies of the spec that only the
//! controller writes (`status.active`) carry no rules, so the budget is spent where users write.

use schemars::Schema;

/// Removes every `x-kubernetes-validations` from `schema` and everything under it.
pub fn without_cel_rules(schema: &mut Schema) {
    let mut value = schema.clone().to_value();
    strip_keywords(&mut value, &|key| key == "x-kubernetes-validations");
    if let Ok(stripped) = Schema::try_from(value) {
        *schema = stripped;
    }
}

/// Removes every keyword for which `drop` is true from a JSON schema and everything under it.
pub fn strip_keywords(value: &mut serde_json::Value, drop: &dyn Fn(&str) -> bool) {
    match value {
        serde_json::Value::Object(map) => {
            map.retain(|key, _| !drop(key));
            map.values_mut().for_each(|v| strip_keywords(v, drop));
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(|v| strip_keywords(v, drop)),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_are_removed_at_every_depth_and_nothing_else() {
        let mut schema = Schema::try_from(serde_json::json!({
            "type": "object",
            "x-kubernetes-validations": [{"rule": "self.a"}],
            "properties": {"url": {"type": "string", "maxLength": 9,
                "x-kubernetes-validations": [{"rule": "self.startsWith('h')"}]}},
            "additionalProperties": {"allOf": [{"x-kubernetes-validations": []}]}
        }))
        .unwrap();
        without_cel_rules(&mut schema);
        assert_eq!(
            schema.to_value(),
            serde_json::json!({
                "type": "object",
                "properties": {"url": {"type": "string", "maxLength": 9}},
                "additionalProperties": {"allOf": [{}]}
            })
        );
    }
}
