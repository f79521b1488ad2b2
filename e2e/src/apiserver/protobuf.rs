//! The one protobuf message kubectl insists on sending: access reviews (`kubectl auth can-i`).
//! Everything else is JSON. Decodes just the fields RBAC needs.

use serde_json::{Map, Value, json};

/// Protobuf bodies start with this, then a `runtime.Unknown` wrapping the message.
const MAGIC: &[u8] = b"k8s\0";

fn varint(bytes: &[u8], pos: &mut usize) -> Option<u64> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let b = *bytes.get(*pos)?;
        *pos += 1;
        value |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Some(value);
        }
    }
    None
}

/// The fields of a message as `(number, bytes)` for length-delimited ones (others skipped).
fn fields(bytes: &[u8]) -> Option<Vec<(u64, &[u8])>> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < bytes.len() {
        let tag = varint(bytes, &mut pos)?;
        match tag & 7 {
            0 => {
                varint(bytes, &mut pos)?;
            }
            2 => {
                let len = usize::try_from(varint(bytes, &mut pos)?).ok()?;
                let end = pos.checked_add(len).filter(|e| *e <= bytes.len())?;
                out.push((tag >> 3, &bytes[pos..end]));
                pos = end;
            }
            1 => pos += 8,
            5 => pos += 4,
            _ => return None,
        }
    }
    Some(out)
}

fn text(bytes: &[u8]) -> Value {
    json!(String::from_utf8_lossy(bytes))
}

/// Decodes a protobuf (Self)SubjectAccessReview into its JSON form.
pub fn decode_access_review(body: &[u8]) -> Option<Value> {
    let unknown = fields(body.strip_prefix(MAGIC)?)?;
    let raw = unknown.iter().find(|(n, _)| *n == 2)?.1;
    let review = fields(raw)?;
    let spec = fields(review.iter().find(|(n, _)| *n == 2)?.1)?;
    let mut spec_json = Map::new();
    let mut groups = Vec::new();
    for (n, value) in spec {
        match n {
            1 => {
                const NAMES: [&str; 7] = [
                    "namespace",
                    "verb",
                    "group",
                    "version",
                    "resource",
                    "subresource",
                    "name",
                ];
                let attrs: Map<String, Value> = fields(value)?
                    .into_iter()
                    .filter_map(|(f, v)| {
                        Some((
                            NAMES
                                .get(usize::try_from(f).ok()?.checked_sub(1)?)?
                                .to_string(),
                            text(v),
                        ))
                    })
                    .collect();
                spec_json.insert("resourceAttributes".into(), Value::Object(attrs));
            }
            3 => {
                spec_json.insert("user".into(), text(value));
            }
            4 => groups.push(text(value)),
            _ => {}
        }
    }
    if !groups.is_empty() {
        spec_json.insert("groups".into(), Value::Array(groups));
    }
    Some(json!({"apiVersion": "authorization.k8s.io/v1", "spec": spec_json}))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(n: u8, bytes: &[u8]) -> Vec<u8> {
        let mut out = vec![(n << 3) | 2, u8::try_from(bytes.len()).unwrap()];
        out.extend_from_slice(bytes);
        out
    }

    #[test]
    fn decodes_a_self_subject_access_review() {
        let attrs = [
            field(1, b"tenant-acme"),
            field(2, b"create"),
            field(3, b"tenantmcp.dev"),
            field(5, b"tenantmcpconfigs"),
        ]
        .concat();
        let spec = field(1, &attrs);
        let review = [field(1, b""), field(2, &spec)].concat();
        let unknown = [
            field(
                1,
                &[
                    field(1, b"authorization.k8s.io/v1"),
                    field(2, b"SelfSubjectAccessReview"),
                ]
                .concat(),
            ),
            field(2, &review),
        ]
        .concat();
        let body = [MAGIC, &unknown].concat();
        let decoded = decode_access_review(&body).unwrap();
        assert_eq!(decoded["spec"]["resourceAttributes"]["verb"], "create");
        assert_eq!(
            decoded["spec"]["resourceAttributes"]["namespace"],
            "tenant-acme"
        );
        assert_eq!(
            decoded["spec"]["resourceAttributes"]["resource"],
            "tenantmcpconfigs"
        );
        assert!(decode_access_review(b"{}").is_none());
    }
}
