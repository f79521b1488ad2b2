//! A tower layer that puts each request's tenant in scope: taken from a request header or
//! from a claim of a verified bearer JWT, checked to be a tenant id (a DNS label), then
//! available to the handler through [`super::current_tenant`] (the services' `*_current`
//! methods) and as the [`Tenant`] request extension.
//!
//! ```no_run
//! use tenant_mcp::client::layer::TenantLayer;
//! let app: axum::Router = axum::Router::new()
//!     .route("/", axum::routing::get(|| async { "hello" }))
//!     .layer(TenantLayer::header("x-tenant-id"));
//! ```

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::{HeaderName, HeaderValue, Request, Response, StatusCode, header};
use jsonwebtoken::{DecodingKey, Validation};

use super::context::with_tenant;
use crate::config::validate::check_tenant_id;

/// The tenant of the request, as a request extension.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tenant(pub Arc<str>);

/// Where the tenant comes from.
enum TenantFrom {
    Header(HeaderName),
    Jwt {
        claim: String,
        key: Box<DecodingKey>,
        validation: Box<Validation>,
    },
}

/// The layer. Requests without a valid tenant get 400 (header) or 401 (JWT) with a message
/// saying what was expected, and never reach the service.
#[derive(Clone)]
pub struct TenantLayer {
    from: Arc<TenantFrom>,
}

impl std::fmt::Debug for TenantLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &*self.from {
            TenantFrom::Header(h) => write!(f, "TenantLayer(header {h})"),
            TenantFrom::Jwt { claim, .. } => write!(f, "TenantLayer(JWT claim {claim})"),
        }
    }
}

impl TenantLayer {
    /// The tenant is the value of header `name` (e.g. `x-tenant-id`). Only for services
    /// behind a gateway that sets it: a client could claim any tenant.
    ///
    /// # Panics
    /// If `name` is not a valid header name (a programming error, found at startup).
    pub fn header(name: impl TryInto<HeaderName, Error: std::fmt::Debug>) -> Self {
        #[allow(clippy::expect_used)]
        let name = name.try_into().expect("a valid header name");
        Self {
            from: Arc::new(TenantFrom::Header(name)),
        }
    }

    /// The tenant is claim `claim` of the `Authorization: Bearer` JWT, verified with `key`
    /// under `validation` (algorithm, issuer, audience, expiry).
    pub fn jwt_claim(claim: impl Into<String>, key: DecodingKey, validation: Validation) -> Self {
        Self {
            from: Arc::new(TenantFrom::Jwt {
                claim: claim.into(),
                key: Box::new(key),
                validation: Box::new(validation),
            }),
        }
    }

    /// The tenant of `parts`, or the status and message to answer with.
    fn tenant_of(&self, headers: &http::HeaderMap) -> Result<Arc<str>, (StatusCode, String)> {
        let tenant = match &*self.from {
            TenantFrom::Header(name) => {
                let value = headers.get(name).ok_or_else(|| {
                    (
                        StatusCode::BAD_REQUEST,
                        format!("header {name}: missing; expected the tenant id"),
                    )
                })?;
                value
                    .to_str()
                    .map_err(|_| {
                        (
                            StatusCode::BAD_REQUEST,
                            format!("header {name}: not visible ASCII; expected a tenant id"),
                        )
                    })?
                    .to_owned()
            }
            TenantFrom::Jwt {
                claim,
                key,
                validation,
            } => {
                let unauthorized = |m: String| (StatusCode::UNAUTHORIZED, m);
                let token = headers
                    .get(header::AUTHORIZATION)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.strip_prefix("Bearer "))
                    .ok_or_else(|| {
                        unauthorized("header authorization: expected `Bearer <JWT>`".into())
                    })?;
                let data = jsonwebtoken::decode::<serde_json::Map<String, serde_json::Value>>(
                    token, key, validation,
                )
                .map_err(|e| unauthorized(format!("bearer token: {e}")))?;
                match data.claims.get(claim) {
                    Some(serde_json::Value::String(s)) => s.clone(),
                    Some(_) => {
                        return Err(unauthorized(format!(
                            "bearer token: claim {claim:?} must be a string tenant id"
                        )));
                    }
                    None => {
                        return Err(unauthorized(format!(
                            "bearer token: claim {claim:?} is missing; expected the tenant id"
                        )));
                    }
                }
            }
        };
        check_tenant_id(&tenant).map_err(|e| (StatusCode::BAD_REQUEST, e))?;
        Ok(tenant.into())
    }
}

impl<S> tower_layer::Layer<S> for TenantLayer {
    type Service = TenantService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        TenantService {
            inner,
            layer: self.clone(),
        }
    }
}

/// The service the layer wraps around another.
#[derive(Clone, Debug)]
pub struct TenantService<S> {
    inner: S,
    layer: TenantLayer,
}

impl<S, B, RB> tower_service::Service<Request<B>> for TenantService<S>
where
    S: tower_service::Service<Request<B>, Response = Response<RB>>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    RB: From<String> + Send + 'static,
{
    type Response = Response<RB>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Response<RB>, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<B>) -> Self::Future {
        match self.layer.tenant_of(request.headers()) {
            Ok(tenant) => {
                request.extensions_mut().insert(Tenant(tenant.clone()));
                let future = self.inner.call(request);
                Box::pin(with_tenant(tenant, future))
            }
            Err((status, message)) => {
                let mut response = Response::new(RB::from(
                    serde_json::json!({ "error": message }).to_string(),
                ));
                *response.status_mut() = status;
                response.headers_mut().insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/json"),
                );
                if status == StatusCode::UNAUTHORIZED {
                    response.headers_mut().insert(
                        header::WWW_AUTHENTICATE,
                        HeaderValue::from_static("Bearer error=\"invalid_token\""),
                    );
                }
                Box::pin(std::future::ready(Ok(response)))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{Algorithm, EncodingKey, Header};
    use tower_service::Service as _;

    /// The layer around a service that answers with the tenant it saw in scope and in the
    /// extensions.
    async fn answer(layer: &TenantLayer, request: Request<()>) -> (StatusCode, String) {
        let inner = tower::service_fn(|req: Request<()>| async move {
            let scoped = super::super::current_tenant();
            let ext = req.extensions().get::<Tenant>().map(|t| t.0.clone());
            assert_eq!(scoped, ext, "scope and extension agree");
            Ok::<_, std::convert::Infallible>(Response::new(
                scoped.map(|t| t.to_string()).unwrap_or_default(),
            ))
        });
        let mut service = tower_layer::Layer::layer(layer, inner);
        let response = service.call(request).await.unwrap_or_else(|e| match e {});
        let status = response.status();
        let body = response.into_body();
        // Refusals are `{"error": "…"}`: compare the message itself.
        let message = serde_json::from_str::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v["error"].as_str().map(str::to_owned))
            .unwrap_or(body);
        (status, message)
    }

    fn get(headers: &[(&str, &str)]) -> Request<()> {
        let mut b = Request::builder().uri("/");
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        b.body(()).unwrap_or_else(|e| panic!("{e}"))
    }

    #[tokio::test]
    async fn a_header_names_the_tenant_and_a_missing_or_bad_one_is_refused() {
        let layer = TenantLayer::header("x-tenant-id");
        assert_eq!(
            answer(&layer, get(&[("x-tenant-id", "acme")])).await,
            (StatusCode::OK, "acme".into())
        );
        let (status, body) = answer(&layer, get(&[])).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert!(body.contains("header x-tenant-id: missing"), "{body}");
        let (status, body) = answer(&layer, get(&[("x-tenant-id", "Acme_Corp")])).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert!(body.contains("is not a DNS label"), "{body}");
    }

    #[tokio::test]
    async fn a_verified_jwt_claim_names_the_tenant_and_anything_else_is_unauthorized() {
        let secret = b"test-secret-of-32-bytes-or-more!!";
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_issuer(&["https://issuer.example"]);
        validation.set_audience(&["tenant-app"]);
        let layer = TenantLayer::jwt_claim("tenant", DecodingKey::from_secret(secret), validation);
        let exp = jiff::Timestamp::now().as_second() + 600;
        let token = |claims: serde_json::Value, key: &[u8]| {
            let bearer = jsonwebtoken::encode(
                &Header::new(Algorithm::HS256),
                &claims,
                &EncodingKey::from_secret(key),
            )
            .unwrap_or_else(|e| panic!("{e}"));
            format!("Bearer {bearer}")
        };
        let good = serde_json::json!({
            "tenant": "acme", "iss": "https://issuer.example", "aud": "tenant-app", "exp": exp
        });
        assert_eq!(
            answer(
                &layer,
                get(&[("authorization", &token(good.clone(), secret))])
            )
            .await,
            (StatusCode::OK, "acme".into())
        );
        let mut cases = vec![
            (get(&[]), "expected `Bearer <JWT>`".to_owned()),
            (
                get(&[(
                    "authorization",
                    &token(good.clone(), b"another-secret-of-32-bytes-long!!"),
                )]),
                "InvalidSignature".to_owned(),
            ),
        ];
        let mut expired = good.clone();
        expired["exp"] = serde_json::json!(exp - 7200);
        cases.push((
            get(&[("authorization", &token(expired, secret))]),
            "ExpiredSignature".into(),
        ));
        let mut wrong_issuer = good.clone();
        wrong_issuer["iss"] = serde_json::json!("https://other.example");
        cases.push((
            get(&[("authorization", &token(wrong_issuer, secret))]),
            "InvalidIssuer".into(),
        ));
        let mut no_claim = good.clone();
        no_claim.as_object_mut().map(|o| o.remove("tenant"));
        cases.push((
            get(&[("authorization", &token(no_claim, secret))]),
            "claim \"tenant\" is missing".into(),
        ));
        for (request, expected) in cases {
            let (status, body) = answer(&layer, request).await;
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
            assert!(body.contains(&expected), "expected {expected:?} in {body}");
        }
    }
}
