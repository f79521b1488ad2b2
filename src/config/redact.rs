//! Credentials in memory, and redaction of anything that might hold one.
//!
//! A [`Credential`] prints as `***` through `Debug` and `Display` and is not `Serialize`, so a
//! log line, an error or a debug dump cannot leak it by accident; only [`Credential::expose`]
//! gives the value, at the one place that hands it to a driver.

use std::fmt;

use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;

/// What redacted values print as.
pub const REDACTED: &str = "***";

/// A secret value (password, secret access key, bearer token).
#[derive(Clone)]
pub struct Credential(SecretString);

impl Credential {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(SecretString::from(value.into()))
    }

    /// The secret value, for the driver that needs it. Never log or format the result.
    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }
}

impl fmt::Debug for Credential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

impl fmt::Display for Credential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

impl PartialEq for Credential {
    fn eq(&self, other: &Self) -> bool {
        self.expose() == other.expose()
    }
}

impl Eq for Credential {}

/// Reads a credential from untrusted input (a management tool's arguments) straight into
/// secret memory; there is deliberately no `Serialize`.
impl<'de> serde::Deserialize<'de> for Credential {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer).map(Self::new)
    }
}

impl schemars::JsonSchema for Credential {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Credential".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "minLength": 1,
            "writeOnly": true,
            "description": "A secret value: stored in a Secret, never returned or logged"
        })
    }
}

/// Postgres credentials resolved from a Secret.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PostgresCredentials {
    /// The user name (not secret).
    pub username: String,
    /// The password.
    pub password: Credential,
}

/// S3 credentials resolved from a Secret.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct S3Credentials {
    /// The access key id (an identifier, not secret).
    pub access_key_id: String,
    /// The secret access key.
    pub secret_access_key: Credential,
}

/// MCP credentials resolved from Secrets.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct McpCredentials {
    /// The bearer token, sent as `Authorization: Bearer <token>`.
    pub bearer_token: Option<Credential>,
    /// Values of headers read from Secrets (`headers[].valueFrom`), by header name.
    pub headers: std::collections::BTreeMap<String, Credential>,
}

impl McpCredentials {
    /// Every secret value, for scrubbing text a server sent back.
    pub fn values(&self) -> impl Iterator<Item = &str> {
        self.bearer_token
            .iter()
            .chain(self.headers.values())
            .map(Credential::expose)
    }
}

/// Field names that hold credentials when they appear with an inline value. Compared after
/// lower-casing and dropping `-` and `_`, so `secret_access_key` and `secretAccessKey` match.
const CREDENTIAL_NAMES: &[&str] = &[
    "password",
    "passwd",
    "pwd",
    "pass",
    "secret",
    "secretkey",
    "secretaccesskey",
    "accesskey",
    "accesskeyid",
    "sessiontoken",
    "token",
    "bearertoken",
    "accesstoken",
    "authtoken",
    "apitoken",
    "apikey",
    "xapikey",
    "authorization",
    "proxyauthorization",
    "cookie",
    "privatekey",
    "clientsecret",
    "credentials",
    "connectionstring",
    "dsn",
];

/// True when a field or header name looks like it carries a credential (`password`,
/// `secretAccessKey`, `X-Api-Key`, `Authorization`, …).
pub fn is_credential_name(name: &str) -> bool {
    let normalized: String = name
        .chars()
        .filter(|c| *c != '-' && *c != '_')
        .flat_map(char::to_lowercase)
        .collect();
    CREDENTIAL_NAMES.contains(&normalized.as_str())
}

/// Replaces, in place, every scalar value under a credential-like key with `***`, and the
/// password part of any URL with credentials. For debug dumps of raw documents.
pub fn redact_json(value: &mut Value) {
    match value {
        Value::Object(map) => {
            for (key, v) in map.iter_mut() {
                if is_credential_name(key) && !v.is_object() && !v.is_array() && !v.is_null() {
                    *v = Value::String(REDACTED.into());
                } else {
                    redact_json(v);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(redact_json),
        Value::String(s) => {
            if let Some(redacted) = redact_url_userinfo(s) {
                *s = redacted;
            }
        }
        _ => {}
    }
}

/// `scheme://user:secret@host/…` with the userinfo replaced by `***`, if the string is a URL
/// with userinfo.
pub fn redact_url_userinfo(s: &str) -> Option<String> {
    let url = url::Url::parse(s).ok()?;
    if url.username().is_empty() && url.password().is_none() {
        return None;
    }
    let mut url = url;
    url.set_username(REDACTED).ok()?;
    url.set_password(None).ok()?;
    Some(url.to_string())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn credentials_never_print() {
        let creds = PostgresCredentials {
            username: "app".into(),
            password: Credential::new("hunter2-very-secret"),
        };
        let s3 = S3Credentials {
            access_key_id: "AKIDEXAMPLE".into(),
            secret_access_key: Credential::new("wJalrXUtnFEMI/K7MDENG"),
        };
        let dump = format!("{creds:?} {s3:?} {} {:#?}", creds.password, s3);
        assert!(!dump.contains("hunter2"), "{dump}");
        assert!(!dump.contains("wJalrX"), "{dump}");
        assert!(dump.contains("***"));
        assert_eq!(creds.password.expose(), "hunter2-very-secret");
    }

    #[test]
    fn credential_names() {
        for name in [
            "password",
            "secret_access_key",
            "secretAccessKey",
            "X-Api-Key",
            "Authorization",
            "bearerToken",
        ] {
            assert!(is_credential_name(name), "{name}");
        }
        for name in [
            "passwordKey",
            "credentialsSecretRef",
            "host",
            "X-Team",
            "tokenKey",
            "key",
        ] {
            assert!(!is_credential_name(name), "{name}");
        }
    }

    #[test]
    fn redacts_json_documents() {
        let mut doc = json!({
            "spec": {
                "password": "hunter2",
                "url": "https://user:hunter3@example.com/mcp",
                "headers": [{"name": "X-Team", "value": "a"}],
                "credentialsSecretRef": {"name": "pg", "passwordKey": "password"}
            }
        });
        redact_json(&mut doc);
        let text = doc.to_string();
        assert!(
            !text.contains("hunter2") && !text.contains("hunter3"),
            "{text}"
        );
        assert_eq!(doc["spec"]["password"], "***");
        assert_eq!(
            doc["spec"]["credentialsSecretRef"]["passwordKey"],
            "password"
        );
    }
}
