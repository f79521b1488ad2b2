//! Field-addressed validation errors, modelled on the Kubernetes API server's field errors so
//! they can become `Invalid` causes, condition messages and MCP tool errors unchanged.

use std::fmt;

use serde::Serialize;

/// A path into an object, printed as `spec.servers.mcpServers[search].url`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct FieldPath(String);

impl FieldPath {
    /// A root path such as `spec`.
    pub fn new(root: &str) -> Self {
        Self(root.to_owned())
    }

    /// The path of a child field.
    pub fn child(&self, name: &str) -> Self {
        if self.0.is_empty() {
            Self(name.to_owned())
        } else {
            Self(format!("{}.{name}", self.0))
        }
    }

    /// The path of a list element by position.
    pub fn index(&self, index: usize) -> Self {
        Self(format!("{}[{index}]", self.0))
    }

    /// The path of a list element by its key (for lists keyed by `name`).
    pub fn key(&self, key: &str) -> Self {
        Self(format!("{}[{key}]", self.0))
    }

    /// The path as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for FieldPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What kind of problem a field has; the names follow the API server's `CauseType`s.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, schemars::JsonSchema)]
pub enum ErrorKind {
    /// A required field is missing.
    #[serde(rename = "FieldValueRequired")]
    Required,
    /// The value is malformed or out of range.
    #[serde(rename = "FieldValueInvalid")]
    Invalid,
    /// The value is not one of the supported values.
    #[serde(rename = "FieldValueNotSupported")]
    NotSupported,
    /// The field may not be set (inline credentials, denied endpoints, unknown fields).
    #[serde(rename = "FieldValueForbidden")]
    Forbidden,
    /// The value repeats one that must be unique.
    #[serde(rename = "FieldValueDuplicate")]
    Duplicate,
    /// The value is too long.
    #[serde(rename = "FieldValueTooLong")]
    TooLong,
    /// The list has too many items.
    #[serde(rename = "FieldValueTooMany")]
    TooMany,
}

impl ErrorKind {
    /// The API server's cause type, e.g. `FieldValueInvalid`.
    pub fn cause_type(self) -> &'static str {
        match self {
            Self::Required => "FieldValueRequired",
            Self::Invalid => "FieldValueInvalid",
            Self::NotSupported => "FieldValueNotSupported",
            Self::Forbidden => "FieldValueForbidden",
            Self::Duplicate => "FieldValueDuplicate",
            Self::TooLong => "FieldValueTooLong",
            Self::TooMany => "FieldValueTooMany",
        }
    }
}

/// One problem with one field: where it is, what kind it is, and what was expected.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, schemars::JsonSchema)]
pub struct FieldError {
    /// Path of the field, e.g. `spec.servers.postgres.port`.
    pub path: String,
    /// The kind of problem.
    #[serde(rename = "reason")]
    pub kind: ErrorKind,
    /// What is wrong and what was expected, e.g. `must be 1..=65535, got 70000`.
    pub message: String,
}

impl FieldError {
    /// A problem of `kind` at `path`.
    pub fn new(path: &FieldPath, kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            path: path.to_string(),
            kind,
            message: message.into(),
        }
    }

    /// A missing required field.
    pub fn required(path: &FieldPath, what: &str) -> Self {
        Self::new(path, ErrorKind::Required, format!("is required: {what}"))
    }

    /// A malformed or out-of-range value.
    pub fn invalid(path: &FieldPath, message: impl Into<String>) -> Self {
        Self::new(path, ErrorKind::Invalid, message)
    }

    /// A value that may not be used here.
    pub fn forbidden(path: &FieldPath, message: impl Into<String>) -> Self {
        Self::new(path, ErrorKind::Forbidden, message)
    }

    /// The same error under another root, e.g. `spec` prefixed to a path relative to it.
    pub fn prefixed(mut self, prefix: &str) -> Self {
        if !prefix.is_empty() {
            self.path = if self.path.is_empty() {
                prefix.to_owned()
            } else if self.path.starts_with('[') {
                format!("{prefix}{}", self.path)
            } else {
                format!("{prefix}.{}", self.path)
            };
        }
        self
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

/// Every problem found in one object, in the order found.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct FieldErrors(pub Vec<FieldError>);

impl FieldErrors {
    /// Adds one problem.
    pub fn push(&mut self, error: FieldError) {
        self.0.push(error);
    }

    /// True when nothing was found.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Turns "no errors" into `Ok(())`.
    pub fn into_result(self) -> Result<(), FieldErrors> {
        if self.0.is_empty() { Ok(()) } else { Err(self) }
    }

    /// The errors, in order.
    pub fn iter(&self) -> std::slice::Iter<'_, FieldError> {
        self.0.iter()
    }
}

impl fmt::Display for FieldErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for FieldErrors {}

impl Extend<FieldError> for FieldErrors {
    fn extend<T: IntoIterator<Item = FieldError>>(&mut self, iter: T) {
        self.0.extend(iter);
    }
}

impl IntoIterator for FieldErrors {
    type Item = FieldError;
    type IntoIter = std::vec::IntoIter<FieldError>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}
