//! The access check in front of every route: 401 without a valid key, 403
//! with a key whose roles the route does not take. Off when no key is
//! configured.

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::{header, StatusCode};
use actix_web::middleware::Next;
use actix_web::{web, HttpMessage, HttpResponse, ResponseError};

use super::error::ApiError;
use super::routes;
use super::AppState;
use crate::auth::{presented_key, Caller};

/// Who the caller is, for handlers whose parameters need more than the
/// route's access: absent when auth is off (everyone may do everything).
pub fn caller(req: &actix_web::HttpRequest) -> Option<Caller> {
    req.extensions().get::<Caller>().cloned()
}

/// Who acted, for the audit log: the roles of the caller's key joined by
/// `+` and its label (`admin (ops)`), or `open` when auth is off.
pub fn caller_role(req: &actix_web::HttpRequest) -> String {
    role_of(req.extensions().get::<Caller>())
}

/// `caller_role`, of a caller already known.
pub fn role_of(caller: Option<&Caller>) -> String {
    caller
        .map(|c| {
            let roles = c
                .roles
                .iter()
                .map(|role| role.as_str())
                .collect::<Vec<_>>()
                .join("+");
            format!("{roles} ({})", c.key)
        })
        .unwrap_or_else(|| "open".into())
}

pub async fn check_access(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, actix_web::Error> {
    let Some(state) = req.app_data::<web::Data<AppState>>().cloned() else {
        return next
            .call(req)
            .await
            .map(ServiceResponse::map_into_left_body);
    };
    if !state.keys.enabled() {
        return next
            .call(req)
            .await
            .map(ServiceResponse::map_into_left_body);
    }
    let access = routes::access_of(req.method(), req.path());
    if access == routes::Access::Open {
        return next
            .call(req)
            .await
            .map(ServiceResponse::map_into_left_body);
    }
    let key = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|h| h.to_str().ok())
        .and_then(presented_key);
    let mut granted = None;
    let refusal = match key {
        None => Some(unauthorized("this route needs a key: `Authorization: Bearer <key>` or HTTP Basic with the key as password")),
        Some(key) => {
            let caller = state.keys.identify(&key);
            let roles = caller.as_ref().map(|c| c.roles.clone()).unwrap_or_default();
            granted = caller;
            if roles.is_empty() {
                Some(unauthorized("the key is not valid"))
            } else if !access.allows(&roles, req.method().as_str()) {
                let what = format!("{} {}", req.method(), req.path());
                Some(ApiError::forbidden(&roles, &what).error_response())
            } else {
                None
            }
        }
    };
    match refusal {
        None => {
            if let Some(caller) = granted {
                req.extensions_mut().insert(caller);
            }
            next.call(req)
                .await
                .map(ServiceResponse::map_into_left_body)
        }
        Some(response) => Ok(req.into_response(response).map_into_right_body()),
    }
}

fn unauthorized(message: &str) -> HttpResponse {
    let mut response =
        ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", message).error_response();
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        header::HeaderValue::from_static("Basic realm=\"interq\", Bearer realm=\"interq\""),
    );
    response
}
