//! Whose server a route leads to: the tenant's own or the global fallback.

/// Whose server a route leads to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Origin {
    /// The tenant's own server.
    Tenant,
    /// The global fallback.
    Global,
}

impl Origin {
    /// `tenant` or `global`, for metric labels and tables.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Tenant => "tenant",
            Self::Global => "global",
        }
    }
}
