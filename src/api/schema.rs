//! Schema transforms for the generated CRDs.
//!
//! The API server gives every CRD a budget for the estimated cost of its CEL rules; a rule
//! under an unbounded map counts once per possible entry. Copies of the spec that only the
//! controller writes (`status.active`) carry no rules, so the budget is spent where users write.

use schemars::Schema;

/// Removes every `x-kubernetes-validations` from `schema` and everything under it.
pub fn without_cel_rules(schema: &mut Schema) {
    fn strip(value: &mut serde_json::Value) {
        match value {
            serde_json::Value::Object(map) => {
                map.remove("x-kubernetes-validations");
                map.values_mut().for_each(strip);
            }
            serde_json::Value::Array(items) => items.iter_mut().for_each(strip),
            _ => {}
        }
    }
    let mut value = schema.clone().to_value();
    strip(&mut value);
    if let Ok(stripped) = Schema::try_from(value) {
        *schema = stripped;
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
