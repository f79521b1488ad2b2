//! Protobuf request bodies, which kubectl's typed clients send whatever the server prefers:
//! access reviews (`kubectl auth can-i`) and the built-in kinds `kubectl create <kind>`
//! makes (namespaces, secrets, config maps, service accounts, RBAC objects). Each is
//! decoded into its JSON form from a table of the fields those commands set, taken from
//! Kubernetes' `generated.proto` files; responses are always JSON.

use base64::Engine as _;
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

/// One field's value on the wire.
#[derive(Clone, Copy)]
enum Wire<'a> {
    Varint(u64),
    Bytes(&'a [u8]),
}

/// The fields of a message as `(number, value)`; fixed-width fields are skipped.
fn fields(bytes: &[u8]) -> Option<Vec<(u64, Wire<'_>)>> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < bytes.len() {
        let tag = varint(bytes, &mut pos)?;
        match tag & 7 {
            0 => out.push((tag >> 3, Wire::Varint(varint(bytes, &mut pos)?))),
            2 => {
                let len = usize::try_from(varint(bytes, &mut pos)?).ok()?;
                let end = pos.checked_add(len).filter(|e| *e <= bytes.len())?;
                out.push((tag >> 3, Wire::Bytes(&bytes[pos..end])));
                pos = end;
            }
            1 => pos += 8,
            5 => pos += 4,
            _ => return None,
        }
    }
    Some(out)
}

/// The length-delimited fields only, as the access review decoder wants them.
fn byte_fields(bytes: &[u8]) -> Option<Vec<(u64, &[u8])>> {
    Some(
        fields(bytes)?
            .into_iter()
            .filter_map(|(n, v)| match v {
                Wire::Bytes(b) => Some((n, b)),
                Wire::Varint(_) => None,
            })
            .collect(),
    )
}

/// How a field's bytes become JSON.
#[derive(Clone, Copy)]
enum Shape {
    Text,
    /// `bytes`, which JSON carries as base64.
    Base64,
    Bool,
    Int,
    Message(&'static [Field]),
    /// `map<string, string>`.
    TextMap,
    /// `map<string, bytes>`.
    Base64Map,
}

/// A field of a message: number, JSON name, shape, repeated or not.
type Field = (u64, &'static str, Shape, bool);

const OBJECT_META: &[Field] = &[
    (1, "name", Shape::Text, false),
    (2, "generateName", Shape::Text, false),
    (3, "namespace", Shape::Text, false),
    (11, "labels", Shape::TextMap, false),
    (12, "annotations", Shape::TextMap, false),
    (14, "finalizers", Shape::Text, true),
];
const NAMESPACE: &[Field] = &[
    (1, "metadata", Shape::Message(OBJECT_META), false),
    (
        2,
        "spec",
        Shape::Message(&[(1, "finalizers", Shape::Text, true)]),
        false,
    ),
];
const SECRET: &[Field] = &[
    (1, "metadata", Shape::Message(OBJECT_META), false),
    (2, "data", Shape::Base64Map, false),
    (3, "type", Shape::Text, false),
    (4, "stringData", Shape::TextMap, false),
    (5, "immutable", Shape::Bool, false),
];
const CONFIG_MAP: &[Field] = &[
    (1, "metadata", Shape::Message(OBJECT_META), false),
    (2, "data", Shape::TextMap, false),
    (3, "binaryData", Shape::Base64Map, false),
    (4, "immutable", Shape::Bool, false),
];
const SERVICE_ACCOUNT: &[Field] = &[
    (1, "metadata", Shape::Message(OBJECT_META), false),
    (4, "automountServiceAccountToken", Shape::Bool, false),
];
const POLICY_RULE: &[Field] = &[
    (1, "verbs", Shape::Text, true),
    (2, "apiGroups", Shape::Text, true),
    (3, "resources", Shape::Text, true),
    (4, "resourceNames", Shape::Text, true),
    (5, "nonResourceURLs", Shape::Text, true),
];
const ROLE: &[Field] = &[
    (1, "metadata", Shape::Message(OBJECT_META), false),
    (2, "rules", Shape::Message(POLICY_RULE), true),
];
const SUBJECT: &[Field] = &[
    (1, "kind", Shape::Text, false),
    (2, "apiGroup", Shape::Text, false),
    (3, "name", Shape::Text, false),
    (4, "namespace", Shape::Text, false),
];
const ROLE_REF: &[Field] = &[
    (1, "apiGroup", Shape::Text, false),
    (2, "kind", Shape::Text, false),
    (3, "name", Shape::Text, false),
];
const BINDING: &[Field] = &[
    (1, "metadata", Shape::Message(OBJECT_META), false),
    (2, "subjects", Shape::Message(SUBJECT), true),
    (3, "roleRef", Shape::Message(ROLE_REF), false),
];
const DELETE_OPTIONS: &[Field] = &[
    (1, "gracePeriodSeconds", Shape::Int, false),
    (4, "propagationPolicy", Shape::Text, false),
    (5, "dryRun", Shape::Text, true),
];

/// The message table for a kind, by the `apiVersion` and `kind` of its envelope.
fn table(api_version: &str, kind: &str) -> Option<&'static [Field]> {
    Some(match (api_version, kind) {
        ("v1", "Namespace") => NAMESPACE,
        ("v1", "Secret") => SECRET,
        ("v1", "ConfigMap") => CONFIG_MAP,
        ("v1", "ServiceAccount") => SERVICE_ACCOUNT,
        ("rbac.authorization.k8s.io/v1", "Role" | "ClusterRole") => ROLE,
        ("rbac.authorization.k8s.io/v1", "RoleBinding" | "ClusterRoleBinding") => BINDING,
        (_, "DeleteOptions") => DELETE_OPTIONS,
        _ => return None,
    })
}

fn scalar(shape: Shape, value: Wire<'_>) -> Option<Value> {
    Some(match (shape, value) {
        (Shape::Text, Wire::Bytes(b)) => text(b),
        (Shape::Base64, Wire::Bytes(b)) => {
            json!(base64::engine::general_purpose::STANDARD.encode(b))
        }
        (Shape::Bool, Wire::Varint(v)) => json!(v != 0),
        // Two's complement on the wire, as protobuf's int64.
        #[allow(clippy::cast_possible_wrap)]
        (Shape::Int, Wire::Varint(v)) => json!(v as i64),
        (Shape::Message(table), Wire::Bytes(b)) => message(table, b)?,
        _ => return None,
    })
}

/// Decodes a message by its table; unknown field numbers are ignored, as a server that
/// predates them would.
fn message(table: &[Field], bytes: &[u8]) -> Option<Value> {
    let mut out = Map::new();
    for (n, value) in fields(bytes)? {
        let Some(&(_, name, shape, repeated)) = table.iter().find(|f| f.0 == n) else {
            continue;
        };
        match shape {
            Shape::TextMap | Shape::Base64Map => {
                let Wire::Bytes(entry) = value else {
                    return None;
                };
                let entry = byte_fields(entry)?;
                let key = entry.iter().find(|(n, _)| *n == 1).map_or(&[][..], |e| e.1);
                let value = entry.iter().find(|(n, _)| *n == 2).map_or(&[][..], |e| e.1);
                let value_shape = if matches!(shape, Shape::TextMap) {
                    Shape::Text
                } else {
                    Shape::Base64
                };
                let map = out.entry(name).or_insert_with(|| json!({}));
                map.as_object_mut()?.insert(
                    String::from_utf8_lossy(key).into_owned(),
                    scalar(value_shape, Wire::Bytes(value))?,
                );
            }
            _ if repeated => {
                let list = out.entry(name).or_insert_with(|| json!([]));
                list.as_array_mut()?.push(scalar(shape, value)?);
            }
            // Go writes unset strings as ""; JSON omits them.
            Shape::Text if matches!(value, Wire::Bytes([])) => {}
            _ => {
                out.insert(name.to_owned(), scalar(shape, value)?);
            }
        }
    }
    Some(Value::Object(out))
}

/// Decodes a protobuf body of a built-in kind kubectl creates into its JSON form, or says
/// why it cannot.
pub fn decode_object(body: &[u8]) -> Result<Value, String> {
    let unknown = byte_fields(
        body.strip_prefix(MAGIC)
            .ok_or("the body does not start with the protobuf magic number")?,
    )
    .ok_or("the protobuf envelope is malformed")?;
    let type_meta = unknown
        .iter()
        .find(|(n, _)| *n == 1)
        .and_then(|(_, b)| byte_fields(b))
        .unwrap_or_default();
    let find = |n| {
        type_meta
            .iter()
            .find(|(f, _)| *f == n)
            .map(|(_, b)| String::from_utf8_lossy(b).into_owned())
            .unwrap_or_default()
    };
    let (api_version, kind) = (find(1), find(2));
    let table = table(&api_version, &kind).ok_or_else(|| {
        format!("protobuf is not supported for {kind} ({api_version}); send JSON")
    })?;
    let raw = unknown
        .iter()
        .find(|(n, _)| *n == 2)
        .map_or(&[][..], |e| e.1);
    let mut object = message(table, raw).ok_or("the protobuf message is malformed")?;
    if let Some(map) = object.as_object_mut() {
        map.insert("apiVersion".into(), json!(api_version));
        map.insert("kind".into(), json!(kind));
    }
    Ok(object)
}

fn text(bytes: &[u8]) -> Value {
    json!(String::from_utf8_lossy(bytes))
}

/// Decodes a protobuf (Self)SubjectAccessReview into its JSON form.
pub fn decode_access_review(body: &[u8]) -> Option<Value> {
    let unknown = byte_fields(body.strip_prefix(MAGIC)?)?;
    let raw = unknown.iter().find(|(n, _)| *n == 2)?.1;
    let review = byte_fields(raw)?;
    let spec = byte_fields(review.iter().find(|(n, _)| *n == 2)?.1)?;
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
                let attrs: Map<String, Value> = byte_fields(value)?
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

    fn entry(n: u8, key: &[u8], value: &[u8]) -> Vec<u8> {
        field(n, &[field(1, key), field(2, value)].concat())
    }

    fn envelope(api_version: &[u8], kind: &[u8], raw: &[u8]) -> Vec<u8> {
        let type_meta = [field(1, api_version), field(2, kind)].concat();
        [MAGIC, &field(1, &type_meta), &field(2, raw)].concat()
    }

    #[test]
    fn decodes_a_secret_as_kubectl_create_secret_sends_it() {
        let meta = [
            field(1, b"acme-postgres"),
            field(3, b"tenant-acme"),
            entry(11, b"team", b"a"),
        ]
        .concat();
        let secret = [
            field(1, &meta),
            entry(2, b"password", b"s3cr\xffet"),
            field(3, b"Opaque"),
            vec![5 << 3, 1],
        ]
        .concat();
        let decoded = decode_object(&envelope(b"v1", b"Secret", &secret)).unwrap();
        assert_eq!(
            decoded,
            json!({
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {"name": "acme-postgres", "namespace": "tenant-acme", "labels": {"team": "a"}},
                "data": {"password": "czNjcv9ldA=="},
                "type": "Opaque",
                "immutable": true,
            })
        );
    }

    #[test]
    fn decodes_repeated_messages_of_a_role_binding() {
        let subject = |name: &[u8]| field(2, &[field(1, b"Group"), field(3, name)].concat());
        let binding = [
            field(1, &field(1, b"admins")),
            subject(b"a"),
            subject(b"b"),
            field(3, &[field(2, b"ClusterRole"), field(3, b"admin")].concat()),
        ]
        .concat();
        let decoded = decode_object(&envelope(
            b"rbac.authorization.k8s.io/v1",
            b"RoleBinding",
            &binding,
        ))
        .unwrap();
        assert_eq!(decoded["subjects"][1]["name"], "b");
        assert_eq!(decoded["roleRef"]["kind"], "ClusterRole");
    }

    #[test]
    fn refuses_kinds_it_has_no_table_for_and_malformed_bodies() {
        let err = decode_object(&envelope(b"apps/v1", b"Deployment", b"")).unwrap_err();
        assert!(err.contains("Deployment"), "{err}");
        assert!(decode_object(b"{}").is_err());
        // A length running past the end.
        assert!(decode_object(&[MAGIC, &[0x0a, 0x7f, 1]].concat()).is_err());
    }
}
