//! CSRF protection for the site's forms: a random nonce in a same-site,
//! HTTP-only cookie, and in every form a hidden `csrf` field holding the
//! nonce's HMAC under a secret only the server knows. A POST is accepted
//! only when the field is the cookie's HMAC, and when it comes from a page of
//! this site (`Origin`, when the browser sends it, names this host). A
//! caller cannot make up a pair that passes: without the secret it cannot
//! compute the field for any cookie it picks; and another site can neither
//! read a page to learn the field nor make a browser send the cookie with
//! its forms (`SameSite=Strict`).
//!
//! The middleware also sets the security headers of every page.

use actix_web::body::MessageBody;
use actix_web::cookie::{Cookie, SameSite};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{self, HeaderValue};
use actix_web::middleware::Next;
use actix_web::{web, HttpMessage, HttpRequest};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

use crate::api::AppState;

pub const COOKIE: &str = "interq_csrf";
pub const FIELD: &str = "csrf";

/// This request's token, for the forms of the page it renders.
#[derive(Debug, Clone)]
pub struct Token(pub String);

/// The server's secret for form tokens: from the settings (`site.secret`),
/// so that every node behind one address accepts every node's forms, or
/// drawn at start.
#[derive(Clone)]
pub struct Secret([u8; 32]);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(..)")
    }
}

impl Secret {
    /// The secret named by `configured` (any text: its SHA-256 is used),
    /// or a random one.
    pub fn new(configured: Option<&str>) -> Self {
        use sha2::Digest;
        match configured {
            Some(text) => Self(Sha256::digest(text.as_bytes()).into()),
            None => {
                let mut bytes = [0u8; 32];
                bytes[..16].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
                bytes[16..].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
                Self(bytes)
            }
        }
    }

    /// The form token for a cookie's nonce.
    fn sign(&self, nonce: &str) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.0).expect("any key length works");
        mac.update(nonce.as_bytes());
        mac.finalize()
            .into_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }
}

fn secret_of(req: &HttpRequest) -> Option<Secret> {
    req.app_data::<web::Data<AppState>>()
        .map(|s| s.csrf_secret.clone())
}

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

/// Whether a submitted form's token is the HMAC of the caller's cookie, and
/// the form was sent from a page of this site.
pub fn valid(req: &HttpRequest, submitted: Option<&str>) -> bool {
    let (Some(nonce), Some(form), Some(secret)) = (presented(req), submitted, secret_of(req))
    else {
        return false;
    };
    same_origin(req) && bool::from(secret.sign(&nonce).as_bytes().ct_eq(form.as_bytes()))
}

/// A browser names the page a form was sent from (`Origin`): it must be
/// this host. Clients that send no `Origin` (not browsers) pass on the token
/// alone.
fn same_origin(req: &HttpRequest) -> bool {
    let Some(origin) = req.headers().get(header::ORIGIN) else {
        return true;
    };
    let Ok(origin) = origin.to_str() else {
        return false;
    };
    let host = req.connection_info().host().to_owned();
    origin
        .split_once("://")
        .is_some_and(|(_, rest)| rest.eq_ignore_ascii_case(&host))
}

pub async fn protect(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let existing = presented(req.request());
    let nonce = existing.clone().unwrap_or_else(fresh);
    if let Some(secret) = secret_of(req.request()) {
        req.extensions_mut().insert(Token(secret.sign(&nonce)));
    }
    let token = nonce;
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
