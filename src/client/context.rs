//! The tenant a piece of work runs for: a task-local scope set once per request (by the
//! application, or a tower layer from a header or a JWT claim) and read by the services.

use std::future::Future;
use std::sync::Arc;

use super::error::ClientError;
use crate::config::validate::check_tenant_id;

tokio::task_local! {
    static TENANT: Arc<str>;
}

/// Runs `work` with `tenant` in scope.
pub async fn with_tenant<F: Future>(tenant: impl Into<Arc<str>>, work: F) -> F::Output {
    TENANT.scope(tenant.into(), work).await
}

/// The tenant in scope, if any.
pub fn current_tenant() -> Option<Arc<str>> {
    TENANT.try_with(Arc::clone).ok()
}

/// The tenant in scope: [`ClientError::NoTenant`] without one, [`ClientError::InvalidTenant`]
/// when it is not a DNS label.
pub fn require_tenant() -> Result<Arc<str>, ClientError> {
    let tenant = current_tenant().ok_or(ClientError::NoTenant)?;
    check_tenant_id(&tenant).map_err(ClientError::InvalidTenant)?;
    Ok(tenant)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_scope_is_visible_inside_and_gone_outside() {
        assert_eq!(current_tenant(), None);
        assert_eq!(require_tenant(), Err(ClientError::NoTenant));
        let seen = with_tenant("acme", async { current_tenant() }).await;
        assert_eq!(seen.as_deref(), Some("acme"));
        // Nested scopes shadow, then restore.
        let (inner, outer) = with_tenant("a", async {
            let inner = with_tenant("b", async { current_tenant() }).await;
            (inner, current_tenant())
        })
        .await;
        assert_eq!((inner.as_deref(), outer.as_deref()), (Some("b"), Some("a")));
        assert_eq!(current_tenant(), None);
    }
}
