//! CSRF protection for the site's forms: a random token in a same-site,
//! HTTP-only cookie, repeated as a hidden `csrf` field in every form. A POST
//! is accepted only when the two agree. Another site can make a browser send
//! the cookie (not even that: it is `SameSite=Strict`), but cannot read a
//! page to learn the token.
//!
//! The middleware also sets the security headers of every page.

use actix_web::body::MessageBody;
use actix_web::cookie::{Cookie, SameSite};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{self, HeaderValue};
use actix_web::middleware::Next;
use actix_web::{HttpMessage, HttpRequest};
use subtle::ConstantTimeEq;

pub const COOKIE: &str = "interq_csrf";
pub const FIELD: &str = "csrf";

/// This request's token, for the forms of the page it renders.
#[derive(Debug, Clone)]
pub struct Token(pub String);

fn well_formed(t: &str) -> bool {
    t.len() == 64 && t.bytes().all(|b| b.is_ascii_hexdigit())
}

fn fresh() -> String {
    // v4 uuids come from the operating system's random source.
    format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    )
}

/// The token the caller's cookie carries, if any.
fn presented(req: &HttpRequest) -> Option<String> {
    req.cookie(COOKIE)
        .map(|c| c.value().to_owned())
        .filter(|t| well_formed(t))
}

/// Whether a submitted form's token matches the caller's cookie.
pub fn valid(req: &HttpRequest, submitted: Option<&str>) -> bool {
    match (presented(req), submitted) {
        (Some(cookie), Some(form)) => bool::from(cookie.as_bytes().ct_eq(form.as_bytes())),
        _ => false,
    }
}

pub async fn protect(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let existing = presented(req.request());
    let token = existing.clone().unwrap_or_else(fresh);
    req.extensions_mut().insert(Token(token.clone()));
    let mut res = next.call(req).await?;
    if existing.is_none() {
        let cookie = Cookie::build(COOKIE, token)
            .path("/admin")
            .http_only(true)
            .same_site(SameSite::Strict)
            .finish();
        res.response_mut().add_cookie(&cookie)?;
    }
    let headers = res.headers_mut();
    for (name, value) in [
        (
            header::CONTENT_SECURITY_POLICY,
            "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; form-action 'self'",
        ),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::REFERRER_POLICY, "same-origin"),
        (header::X_FRAME_OPTIONS, "DENY"),
    ] {
        headers.insert(name, HeaderValue::from_static(value));
    }
    Ok(res)
}
