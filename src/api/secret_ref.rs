//! References to Kubernetes Secrets. A reference never carries the namespace: a
//! `TenantMcpConfig` may only reference Secrets in its own namespace, and a `GlobalMcpConfig`
//! names one credentials namespace for all of its references.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A single key of a Secret in the referencing object's namespace.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretKeyRef {
    /// Name of the Secret (a DNS subdomain) in the same namespace.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// Key inside the Secret's data.
    #[schemars(length(min = 1, max = 253))]
    pub key: String,
}

/// The Secret holding a Postgres user name and password.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PostgresCredentialsRef {
    /// Name of the Secret (a DNS subdomain) in the same namespace.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// Key of the user name in the Secret's data.
    #[serde(default = "default_username_key")]
    #[schemars(length(min = 1, max = 253))]
    pub username_key: String,
    /// Key of the password in the Secret's data.
    #[serde(default = "default_password_key")]
    #[schemars(length(min = 1, max = 253))]
    pub password_key: String,
}

/// The Secret holding an S3 access key id and secret access key.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct S3CredentialsRef {
    /// Name of the Secret (a DNS subdomain) in the same namespace.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// Key of the access key id in the Secret's data.
    #[serde(default = "default_access_key_id_key")]
    #[schemars(length(min = 1, max = 253))]
    pub access_key_id_key: String,
    /// Key of the secret access key in the Secret's data.
    #[serde(default = "default_secret_access_key_key")]
    #[schemars(length(min = 1, max = 253))]
    pub secret_access_key_key: String,
}

fn default_username_key() -> String {
    "username".into()
}
fn default_password_key() -> String {
    "password".into()
}
fn default_access_key_id_key() -> String {
    "accessKeyId".into()
}
fn default_secret_access_key_key() -> String {
    "secretAccessKey".into()
}

impl PostgresCredentialsRef {
    /// A reference to `name` with the default keys `username` and `password`.
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            username_key: default_username_key(),
            password_key: default_password_key(),
        }
    }
}

impl S3CredentialsRef {
    /// A reference to `name` with the default keys `accessKeyId` and `secretAccessKey`.
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            access_key_id_key: default_access_key_id_key(),
            secret_access_key_key: default_secret_access_key_key(),
        }
    }
}
