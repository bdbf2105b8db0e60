//! What one client, or all of them, may hold of the server: connections in
//! all and per client address, and time to send a request's body. A
//! connection past a cap is still answered (`503` or `429`, then closed), so
//! that nothing waits in silence; `/healthz` and `/readyz` are answered on
//! it as on any other, so that probes see a server under siege as alive.

use std::any::Any;
use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{Extensions, Payload, ServiceRequest, ServiceResponse};
use actix_web::error::PayloadError;
use actix_web::http::StatusCode;
use actix_web::middleware::Next;
use actix_web::web::Bytes;
use actix_web::{web, HttpMessage, ResponseError};
use dashmap::DashMap;
use futures_util::Stream;

use super::error::ApiError;
use super::AppState;

/// The connections open now, and the caps on them.
#[derive(Debug)]
pub struct Connections {
    total: AtomicUsize,
    per_client: DashMap<IpAddr, usize>,
    max_total: usize,
    max_per_client: usize,
}

/// Why a connection's requests are refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refusal {
    /// The server holds as many connections as it takes.
    Total,
    /// This client address holds as many as one may.
    PerClient,
}

/// One open connection, counted until it closes (it lives in the
/// connection's data, dropped with it).
#[derive(Debug)]
pub struct Admitted {
    pool: Arc<Connections>,
    client: Option<IpAddr>,
    refused: Option<Refusal>,
}

impl Connections {
    pub fn new(max_total: usize, max_per_client: usize) -> Arc<Self> {
        Arc::new(Self {
            total: AtomicUsize::new(0),
            per_client: DashMap::new(),
            max_total,
            max_per_client,
        })
    }

    /// Counts a new connection from `client`.
    pub(crate) fn open(self: &Arc<Self>, client: Option<IpAddr>) -> Admitted {
        let total = self.total.fetch_add(1, Ordering::AcqRel) + 1;
        let mine = client.map_or(0, |ip| {
            let mut n = self.per_client.entry(ip).or_insert(0);
            *n += 1;
            *n
        });
        let refused = if total > self.max_total {
            Some(Refusal::Total)
        } else if mine > self.max_per_client {
            Some(Refusal::PerClient)
        } else {
            None
        };
        Admitted {
            pool: Arc::clone(self),
            client,
            refused,
        }
    }

    /// Connections open now.
    pub fn open_now(&self) -> usize {
        self.total.load(Ordering::Acquire)
    }
}

impl Admitted {
    /// The answer to every request on this connection, when it is past a cap.
    pub(crate) fn refusal(&self) -> Option<ApiError> {
        let (status, message) = match self.refused? {
            Refusal::Total => (
                StatusCode::SERVICE_UNAVAILABLE,
                "the server holds as many connections as it takes; retry later",
            ),
            Refusal::PerClient => (
                StatusCode::TOO_MANY_REQUESTS,
                "this client address holds as many connections as one may; close some, or retry later",
            ),
        };
        Some(ApiError::new(status, "too_many_connections", message))
    }
}

impl Drop for Admitted {
    fn drop(&mut self) {
        self.pool.total.fetch_sub(1, Ordering::AcqRel);
        if let Some(ip) = self.client {
            self.pool.per_client.remove_if_mut(&ip, |_, n| {
                *n -= 1;
                *n == 0
            });
        }
    }
}

/// For `HttpServer::on_connect`: counts each connection as it opens.
pub fn on_connect(pool: Arc<Connections>) -> impl Fn(&dyn Any, &mut Extensions) + Send + Sync {
    move |conn, data| {
        let client = conn
            .downcast_ref::<actix_web::rt::net::TcpStream>()
            .and_then(|s| s.peer_addr().ok())
            .or_else(|| {
                conn.downcast_ref::<actix_tls::accept::rustls_0_23::TlsStream<actix_web::rt::net::TcpStream>>()
                    .and_then(|s| s.get_ref().0.peer_addr().ok())
            })
            .map(|a| a.ip());
        data.insert(pool.open(client));
    }
}

fn is_probe(path: &str) -> bool {
    matches!(path, "/healthz" | "/readyz")
}

/// Refuses requests on connections past a cap, and gives every request's
/// body a deadline.
pub async fn admit(
    mut req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, actix_web::Error> {
    let refused = req.conn_data::<Admitted>().and_then(Admitted::refusal);
    if let (Some(refusal), false) = (refused, is_probe(req.path())) {
        let mut answer = refusal.error_response();
        answer
            .head_mut()
            .set_connection_type(actix_web::http::ConnectionType::Close);
        return Ok(req.into_response(answer).map_into_right_body());
    }
    let limit = req
        .app_data::<web::Data<AppState>>()
        .map(|s| Duration::from_secs_f64(s.settings.limits.body_timeout_secs));
    if let Some(limit) = limit {
        let body = req.take_payload();
        req.set_payload(Payload::Stream {
            payload: Box::pin(Deadline {
                inner: body,
                until: Instant::now() + limit,
                timer: None,
            }),
        });
    }
    next.call(req)
        .await
        .map(ServiceResponse::map_into_left_body)
}

/// A body that must have arrived by `until`.
struct Deadline {
    inner: Payload,
    until: Instant,
    /// Made only when the body is not all there at once.
    timer: Option<Pin<Box<tokio::time::Sleep>>>,
}

/// The error a body past its deadline ends with.
pub fn body_timed_out(e: &PayloadError) -> bool {
    matches!(e, PayloadError::Io(io) if io.kind() == std::io::ErrorKind::TimedOut)
}

impl Stream for Deadline {
    type Item = Result<Bytes, PayloadError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if let Poll::Ready(item) = Pin::new(&mut self.inner).poll_next(cx) {
            return Poll::Ready(item);
        }
        let until = self.until;
        let timer = self
            .timer
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(until.into())));
        match timer.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Some(Err(PayloadError::Io(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "the request body did not arrive in time",
            ))))),
            Poll::Pending => Poll::Pending,
        }
    }
}
