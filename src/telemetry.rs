//! Logging: `tracing` to standard error, human-readable or JSON, filtered by
//! `RUST_LOG` or the settings' filter; and the access log, one line per
//! request under the target `interq::access` (so `interq::access=warn` turns
//! it down without losing anything else).
//!
//! Values in the human format have their control characters escaped: a
//! field or name a client chose (`"x\n2026-… INFO forged"`) can never start
//! a line of its own. JSON lines escape them by their nature.

use std::fmt::Write as _;
use std::sync::Mutex;
use std::time::Instant;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use tracing_appender::non_blocking::WorkerGuard;
use tracing_subscriber::field::RecordFields;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::FormatFields;
use tracing_subscriber::EnvFilter;

use crate::api::error::ApiError;
use crate::config::{LogFormat, LogSettings};

/// Keeps the log's writer thread; dropping it writes what is queued.
static WRITER: Mutex<Option<WorkerGuard>> = Mutex::new(None);

/// Installs the global subscriber. Safe to call more than once (later calls
/// do nothing), which tests rely on.
///
/// Lines go to standard error from a thread of their own, written in
/// batches: written by the thread that logged, each access-log line was a
/// system call inside the request (a tenth of a small request's cost). When
/// lines come faster than standard error takes them, logging threads wait
/// rather than lines being dropped.
pub fn init(settings: &LogSettings) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(&settings.filter));
    let (writer, guard) = tracing_appender::non_blocking::NonBlockingBuilder::default()
        .lossy(false)
        .thread_name("interq-log")
        .finish(std::io::BufWriter::with_capacity(
            64 * 1024,
            std::io::stderr(),
        ));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(writer);
    let installed = match settings.format {
        LogFormat::Human => builder.fmt_fields(Escaped).try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
    if installed.is_ok() {
        *WRITER.lock().unwrap_or_else(|p| p.into_inner()) = Some(guard);
    }
}

/// Writes the lines still queued; call before the process exits.
pub fn flush() {
    drop(WRITER.lock().unwrap_or_else(|p| p.into_inner()).take());
}

/// Formats fields as `name=value`, the message bare, with control
/// characters in both written as escapes.
#[derive(Debug, Clone, Copy, Default)]
pub struct Escaped;

impl<'writer> FormatFields<'writer> for Escaped {
    fn format_fields<R: RecordFields>(
        &self,
        mut writer: Writer<'writer>,
        fields: R,
    ) -> std::fmt::Result {
        let mut visitor = EscapingVisitor { out: String::new() };
        fields.record(&mut visitor);
        writer.write_str(&visitor.out)
    }
}

struct EscapingVisitor {
    out: String,
}

impl tracing::field::Visit for EscapingVisitor {
    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        self.write(field, format_args!("{value}"));
    }

    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        self.write(field, format_args!("{value:?}"));
    }
}

impl EscapingVisitor {
    fn write(&mut self, field: &tracing::field::Field, value: std::fmt::Arguments<'_>) {
        if !self.out.is_empty() {
            self.out.push(' ');
        }
        if field.name() != "message" {
            self.out.push_str(field.name());
            self.out.push('=');
        }
        let mut text = String::new();
        let _ = text.write_fmt(value);
        escape_into(&text, &mut self.out);
    }
}

/// Appends `text` with every control character written as an escape.
pub fn escape_into(text: &str, out: &mut String) {
    for c in text.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
}

/// The access log: method, the route that served the request (its
/// pattern, never the path or query a client sent, which may carry data),
/// status, the error code of a refusal, the client's address and the time
/// taken.
pub async fn log_request(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let started = Instant::now();
    let method = req.method().clone();
    let client = req.peer_addr().map(|a| a.ip());
    let res = next.call(req).await?;
    let status = res.status().as_u16();
    let route = res
        .request()
        .match_pattern()
        .unwrap_or_else(|| "(no route)".into());
    let code = res
        .response()
        .error()
        .and_then(|e| e.as_error::<ApiError>())
        .map(|e| e.code);
    let micros = started.elapsed().as_micros() as u64;
    match client {
        Some(ip) => {
            tracing::info!(target: "interq::access", %method, %route, status, code, micros, client = %ip, "request")
        }
        None => {
            tracing::info!(target: "interq::access", %method, %route, status, code, micros, "request")
        }
    }
    Ok(res)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_escaped() {
        let mut out = String::new();
        escape_into("a\nb\r\tc\u{1b}[31m", &mut out);
        assert_eq!(out, "a\\nb\\r\\tc\\u{1b}[31m");
    }
}
