//! Live lists: `GET /admin/live`, a stream of server-sent events that says
//! when anything a list shows may have changed (the store made a change
//! durable, or a worker came or went), so that an open page fetches itself
//! again. The script decides
//! when (not while the tab is hidden, not under a person's selection).

use std::time::Duration;

use actix_web::web::Bytes;
use actix_web::HttpResponse;

use super::pages::Data;

/// How often the counts are compared.
const LIVE_POLL: Duration = Duration::from_secs(1);
/// A comment at least this often keeps proxies from closing a quiet stream.
const KEEPALIVE: Duration = Duration::from_secs(15);

struct Watch {
    state: Data,
    last: Option<u64>,
    quiet_since: tokio::time::Instant,
}

impl Watch {
    /// The next piece of the stream; `None` ends it (at shutdown: the page
    /// reconnects to whichever node answers).
    async fn next(&mut self) -> Option<Bytes> {
        loop {
            if self.last.is_some() {
                tokio::time::sleep(LIVE_POLL).await;
            }
            let broker = &self.state.broker;
            if broker.is_shutting_down() {
                return None;
            }
            // A store that does not answer now may later: say nothing.
            let Ok(now) = digest(&self.state).await else {
                continue;
            };
            let first = self.last.is_none();
            if self.last.replace(now) != Some(now) {
                self.quiet_since = tokio::time::Instant::now();
                return Some(match first {
                    // Sent at once, so that the page knows it is connected.
                    true => Bytes::from_static(b"retry: 2000\n: live\n\n"),
                    false => Bytes::from_static(b"event: change\ndata: {}\n\n"),
                });
            }
            if self.quiet_since.elapsed() >= KEEPALIVE {
                self.quiet_since = tokio::time::Instant::now();
                return Some(Bytes::from_static(b": still live\n\n"));
            }
        }
    }
}

/// Whether anything the lists show may have changed, in one number: the
/// store's version, which moves with every durable change (a claim, a
/// report, a worker's registration), and the number of workers this node
/// knows. Comparing it costs the same at ten queues and at a hundred
/// thousand.
async fn digest(state: &Data) -> Result<u64, crate::broker::BrokerError> {
    let broker = &state.broker;
    let version = broker.store_version().await?;
    let workers = broker.worker_count() as u64;
    Ok(version.wrapping_mul(1_000_003) ^ workers)
}

pub async fn live(state: Data) -> HttpResponse {
    let watch = Watch {
        state,
        last: None,
        quiet_since: tokio::time::Instant::now(),
    };
    let stream = futures_util::stream::unfold(watch, |mut w| async move {
        let piece = w.next().await?;
        Some((Ok::<_, std::convert::Infallible>(piece), w))
    });
    HttpResponse::Ok()
        .content_type("text/event-stream")
        .insert_header(("Cache-Control", "no-cache"))
        .insert_header(("X-Accel-Buffering", "no"))
        .streaming(stream)
}
