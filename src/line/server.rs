//! The listener and its connections. Each connection is one task that reads
//! lines, starts their calls (in the order sent), and writes answers as the
//! calls finish; a bounded number of calls per connection is in flight, and
//! past it the connection's lines wait unread, so a fast client is slowed
//! rather than buffered without end.

use std::net::SocketAddr;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix_web::http::StatusCode;
use anyhow::Context as _;
use bytes::BytesMut;
use futures_util::future::BoxFuture;
use futures_util::stream::FuturesUnordered;
use futures_util::{FutureExt, StreamExt};
use serde_json::{json, Value};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;

use super::{answer_line, Request};
use crate::api::admission::Connections;
use crate::api::call::Call;
use crate::api::error::ApiError;
use crate::api::params::Body;
use crate::api::routes::{self, Access};
use crate::api::AppState;
use crate::auth::Caller;

/// Answers waiting to be written past which no more lines are read.
const OUT_HIGH_BYTES: usize = 1 << 20;
const READ_CHUNK: usize = 16 << 10;

/// What every connection shares.
struct Shared {
    state: Arc<AppState>,
    tls: Option<tokio_rustls::TlsAcceptor>,
    connections: Arc<Connections>,
    max_line: usize,
    max_in_flight: usize,
    /// How long a begun line may take to end, and a write to make progress.
    patience: Duration,
    handshake: Duration,
    testing: bool,
}

/// The pipelined protocol's listener, running.
#[derive(Debug)]
pub struct LineServer {
    addr: SocketAddr,
    stop: Arc<watch::Sender<bool>>,
    task: tokio::task::JoinHandle<()>,
}

impl LineServer {
    /// Binds `listen` and serves it until stopped. `connections` is the
    /// HTTP server's count: the caps hold over both.
    pub async fn start(
        listen: &str,
        state: Arc<AppState>,
        tls: Option<rustls::ServerConfig>,
        connections: Arc<Connections>,
    ) -> anyhow::Result<Self> {
        let listener = TcpListener::bind(listen)
            .await
            .with_context(|| format!("binding line.listen {listen}"))?;
        let addr = listener.local_addr()?;
        let settings = &state.settings;
        let shared = Arc::new(Shared {
            tls: tls.map(|c| tokio_rustls::TlsAcceptor::from(Arc::new(c))),
            connections,
            max_line: settings.line.max_line_bytes,
            max_in_flight: settings.line.max_in_flight,
            patience: Duration::from_secs_f64(settings.limits.body_timeout_secs),
            handshake: Duration::from_secs_f64(settings.limits.header_timeout_secs),
            testing: state.manual_clock.is_some(),
            state,
        });
        let (stop, stopped) = watch::channel(false);
        let grace = Duration::from_secs(shared.state.settings.shutdown_timeout_secs);
        let task = tokio::spawn(accept(listener, shared, stopped, grace));
        tracing::info!(%addr, "serving the line protocol");
        Ok(Self {
            addr,
            stop: Arc::new(stop),
            task,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops it: no new connections or calls; calls in flight are answered.
    pub fn stopper(&self) -> Arc<watch::Sender<bool>> {
        Arc::clone(&self.stop)
    }

    /// Waits until every connection has closed.
    pub async fn stopped(self) {
        let _ = self.task.await;
    }
}

async fn accept(
    listener: TcpListener,
    shared: Arc<Shared>,
    mut stop: watch::Receiver<bool>,
    grace: Duration,
) {
    let mut open = JoinSet::new();
    loop {
        tokio::select! {
            changed = stop.changed() => if changed.is_err() || *stop.borrow() { break },
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    open.spawn(connection(stream, peer, Arc::clone(&shared), stop.clone()));
                }
                Err(e) => {
                    // Out of files, most likely: the connections open now
                    // close in time; do not spin meanwhile.
                    tracing::warn!(error = %e, "line protocol: accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
            Some(_) = open.join_next(), if !open.is_empty() => {}
        }
    }
    drop(listener);
    let drained =
        tokio::time::timeout(grace, async { while open.join_next().await.is_some() {} }).await;
    if drained.is_err() {
        tracing::warn!(
            connections = open.len(),
            "line protocol: connections still open past the shutdown timeout; closed"
        );
        open.abort_all();
    }
}

async fn connection(
    stream: TcpStream,
    peer: SocketAddr,
    shared: Arc<Shared>,
    stop: watch::Receiver<bool>,
) {
    let _ = stream.set_nodelay(true);
    let admitted = shared.connections.open(Some(peer.ip()));
    let refusal = admitted.refusal();
    match &shared.tls {
        None => serve(stream, peer, &shared, stop, refusal).await,
        Some(acceptor) => {
            match tokio::time::timeout(shared.handshake, acceptor.accept(stream)).await {
                Ok(Ok(tls)) => serve(tls, peer, &shared, stop, refusal).await,
                Ok(Err(e)) => {
                    tracing::debug!(%peer, error = %e, "line protocol: TLS handshake failed")
                }
                Err(_) => tracing::debug!(%peer, "line protocol: TLS handshake timed out"),
            }
        }
    }
    drop(admitted);
}

type Pending = BoxFuture<'static, Done>;

/// A call answered: its line, and how it ran.
struct Done {
    line: Vec<u8>,
    order: Order,
}

/// How a call runs beside the connection's others.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Order {
    /// Alongside any other call.
    Alongside,
    /// Alongside any other call; set-up does not wait for it either (a long
    /// poll may wait for long, and for nothing set-up does).
    Claim,
    /// Set-up (interests, queues, schedules, workers): after every call
    /// before it but claims, and before every call after it.
    Alone,
}

impl Order {
    fn of(op: &str) -> Self {
        match op {
            "claim" => Order::Claim,
            "publish" | "report" | "cancel" | "status" | "listTasks" | "tryTask" | "ping"
            | "auth" => Order::Alongside,
            _ => Order::Alone,
        }
    }
}

/// One connection's state between lines.
struct Conn<'a> {
    shared: &'a Shared,
    peer: SocketAddr,
    /// Who presented a key with `auth`.
    caller: Option<Caller>,
    out: BytesMut,
    calls: u64,
    refused: u64,
    /// Set when the client has closed its side: claims still waiting for a
    /// task end, rather than take one for a client that may be gone.
    closed: watch::Sender<bool>,
}

async fn serve<S>(
    stream: S,
    peer: SocketAddr,
    shared: &Shared,
    mut stop: watch::Receiver<bool>,
    refusal: Option<ApiError>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    let (mut rd, mut wr) = tokio::io::split(stream);
    let mut conn = Conn {
        shared,
        peer,
        caller: None,
        out: BytesMut::new(),
        calls: 0,
        refused: 0,
        closed: watch::channel(false).0,
    };
    if let Some(refusal) = refusal {
        // Past a cap: one answer, so that the client knows why, then close.
        let line = answer_line(&Value::Null, Err(&refusal));
        let _ = tokio::time::timeout(shared.handshake, async {
            wr.write_all(&line).await?;
            wr.shutdown().await
        })
        .await;
        return;
    }
    tracing::debug!(%peer, "line protocol: connection opened");
    let mut inbuf = BytesMut::with_capacity(READ_CHUNK);
    // How far `inbuf` has been searched for a newline.
    let mut scanned = 0;
    // Inside a line too long to take: skipping to its end.
    let mut skipping = false;
    let mut in_flight: FuturesUnordered<Pending> = FuturesUnordered::new();
    // No more lines are read: the client ended its half, the server stops,
    // or the client broke the protocol's time limits.
    let mut reading = true;
    let mut eof = false;
    // A call that must run alone, read and waiting for the calls before it.
    let mut held: Option<Request> = None;
    // Calls in flight that set-up waits for (all but claims).
    let mut ordered = 0usize;
    // A set-up call is in flight: no more are started until it is answered.
    let mut alone = false;
    let mut need_flush = false;
    let mut partial_since: Option<Instant> = None;
    let mut stalled_since: Option<Instant> = None;
    loop {
        // A change of interests, queues, schedules or workers waits for
        // the calls before it and holds back those after it, so that a
        // script's set-up is in place before its publishes.
        if ordered == 0 && !alone {
            if let Some(request) = held.take() {
                if let Some(call) = conn.start(request) {
                    in_flight.push(call);
                    ordered += 1;
                    alone = true;
                }
            }
        }
        // Starts the calls of the lines already read, while there is room.
        while reading && held.is_none() && !alone && in_flight.len() < shared.max_in_flight {
            match inbuf[scanned..].iter().position(|b| *b == b'\n') {
                Some(at) => {
                    let line = inbuf.split_to(scanned + at + 1);
                    scanned = 0;
                    if std::mem::take(&mut skipping) {
                        continue;
                    }
                    let Some(request) = conn.read(&line[..line.len() - 1]) else {
                        continue;
                    };
                    let order = Order::of(&request.op);
                    if order == Order::Alone && ordered > 0 {
                        held = Some(request);
                    } else if let Some(call) = conn.start(request) {
                        in_flight.push(call);
                        if order != Order::Claim {
                            ordered += 1;
                        }
                        alone = order == Order::Alone;
                    }
                }
                None => {
                    scanned = inbuf.len();
                    if skipping {
                        inbuf.clear();
                        scanned = 0;
                    } else if inbuf.len() > shared.max_line {
                        conn.refuse(
                            &Value::Null,
                            &ApiError::new(
                                StatusCode::PAYLOAD_TOO_LARGE,
                                "line_too_long",
                                format!(
                                    "the line is over line.max_line_bytes ({} bytes); it is skipped to its end",
                                    shared.max_line
                                ),
                            ),
                        );
                        skipping = true;
                        inbuf.clear();
                        scanned = 0;
                    }
                    break;
                }
            }
        }
        if eof && (inbuf.is_empty() || skipping) {
            reading = false;
        }
        partial_since = match (inbuf.is_empty() && !skipping, partial_since) {
            (true, _) => None,
            (false, None) => Some(Instant::now()),
            (false, since) => since,
        };
        stalled_since = if conn.out.is_empty() {
            None
        } else {
            stalled_since.or_else(|| Some(Instant::now()))
        };
        if !reading && held.is_none() && in_flight.is_empty() && conn.out.is_empty() && !need_flush
        {
            break;
        }
        let deadline = [partial_since.filter(|_| reading && !eof), stalled_since]
            .into_iter()
            .flatten()
            .min()
            .map(|since| since + shared.patience);
        let may_read = reading
            && !eof
            && in_flight.len() < shared.max_in_flight
            && conn.out.len() < OUT_HIGH_BYTES;
        if may_read {
            inbuf.reserve(READ_CHUNK);
        }
        tokio::select! {
            biased;
            changed = stop.changed(), if reading => {
                if changed.is_err() || *stop.borrow() {
                    reading = false;
                }
            }
            Some(done) = in_flight.next(), if !in_flight.is_empty() => {
                conn.out.extend_from_slice(&done.line);
                if done.order != Order::Claim {
                    ordered -= 1;
                }
                if done.order == Order::Alone {
                    alone = false;
                }
            }
            written = write_some(&mut wr, &mut conn.out), if !conn.out.is_empty() || need_flush => {
                match written {
                    Ok(Written::Bytes) => {
                        stalled_since = None;
                        need_flush = true;
                    }
                    Ok(Written::Flushed) => need_flush = false,
                    Err(e) => {
                        tracing::debug!(%peer, error = %e, "line protocol: the client is gone");
                        break;
                    }
                }
            }
            read = rd.read_buf(&mut inbuf), if may_read => match read {
                Ok(0) => {
                    // The client is done sending: its calls are answered,
                    // then the connection closes. A last call without its
                    // newline still counts.
                    eof = true;
                    conn.closed.send_replace(true);
                    if !inbuf.is_empty() && !skipping {
                        inbuf.extend_from_slice(b"\n");
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::debug!(%peer, error = %e, "line protocol: reading failed");
                    break;
                }
            },
            () = sleep_until(deadline), if deadline.is_some() => {
                if stalled_since.is_some_and(|s| s + shared.patience <= Instant::now()) {
                    tracing::debug!(%peer, "line protocol: the client reads no answers; closed");
                    break;
                }
                conn.refuse(
                    &Value::Null,
                    &ApiError::new(
                        StatusCode::REQUEST_TIMEOUT,
                        "line_timeout",
                        "the line did not end within limits.body_timeout_secs; the connection closes",
                    ),
                );
                reading = false;
                inbuf.clear();
            }
        }
    }
    // Calls still in flight (the client is gone) are dropped with them.
    drop(in_flight);
    let _ = tokio::time::timeout(shared.handshake, wr.shutdown()).await;
    tracing::debug!(%peer, calls = conn.calls, refused = conn.refused, "line protocol: connection closed");
}

enum Written {
    Bytes,
    Flushed,
}

/// Writes what it can of `out`; with nothing left to write, flushes (TLS
/// holds records back until then).
async fn write_some<W: AsyncWrite + Unpin>(
    wr: &mut W,
    out: &mut BytesMut,
) -> std::io::Result<Written> {
    if out.is_empty() {
        wr.flush().await?;
        return Ok(Written::Flushed);
    }
    match wr.write_buf(out).await? {
        0 => Err(std::io::ErrorKind::WriteZero.into()),
        _ => Ok(Written::Bytes),
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}

impl Conn<'_> {
    /// Answers at once.
    fn refuse(&mut self, id: &Value, error: &ApiError) {
        self.refused += 1;
        tracing::debug!(peer = %self.peer, code = error.code, message = %error.message, "line protocol: call refused");
        self.out.extend_from_slice(&answer_line(id, Err(error)));
    }

    fn reply(&mut self, id: &Value, ok: &Value) {
        self.out
            .extend_from_slice(&answer_line(id, Ok(ok.to_string().as_bytes())));
    }

    /// Reads one line: its call, or nothing when it was refused (answered
    /// now) or blank.
    fn read(&mut self, line: &[u8]) -> Option<Request> {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        // Blank lines are a person pressing enter.
        if line.iter().all(u8::is_ascii_whitespace) {
            return None;
        }
        self.calls += 1;
        match Request::parse(line) {
            Ok(r) => Some(r),
            Err((id, e)) => {
                self.refuse(&id, &e);
                None
            }
        }
    }

    /// Starts a call; answers at once those that need no operation
    /// (`auth`, `ping`) or are refused.
    fn start(&mut self, request: Request) -> Option<Pending> {
        match self.begin(request) {
            Ok(call) => call,
            Err((id, e)) => {
                self.refuse(&id, &e);
                None
            }
        }
    }

    fn begin(&mut self, request: Request) -> Result<Option<Pending>, (Value, ApiError)> {
        let Request { id, op, args } = request;
        match op.as_str() {
            "ping" => {
                self.reply(&id, &json!({"pong": true}));
                return Ok(None);
            }
            "auth" => {
                let answer = self.authenticate(args);
                match answer {
                    Ok(ok) => self.reply(&id, &ok),
                    Err(e) => self.refuse(&id, &e),
                }
                return Ok(None);
            }
            _ => {}
        }
        let Some(endpoint) = routes::op(&op).filter(|e| self.shared.testing || !e.testing_only)
        else {
            return Err((id, unknown_op(&op, self.shared.testing)));
        };
        let Some((name, run)) = endpoint.op() else {
            return Err((id, unknown_op(&op, self.shared.testing)));
        };
        if let Err(e) = self.authorize(endpoint.access, endpoint.method, name) {
            return Err((id, e));
        }
        let body = match Body::from_args(args) {
            Ok(b) => b,
            Err(e) => return Err((id, e)),
        };
        let call = Call {
            state: Arc::clone(&self.shared.state),
            caller: self.caller.clone(),
            peer: Some(self.peer),
        };
        let peer = self.peer;
        let order = Order::of(name);
        let mut closed = (order == Order::Claim).then(|| self.closed.subscribe());
        Ok(Some(Box::pin(async move {
            let started = Instant::now();
            let run = AssertUnwindSafe(run(call, body)).catch_unwind();
            let outcome = match &mut closed {
                None => run.await,
                Some(closed) => tokio::select! {
                    outcome = run => outcome,
                    _ = closed.wait_for(|c| *c) => Ok(Err(ApiError::new(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "claim_abandoned",
                        "the client closed its side of the connection while this claim waited for a task",
                    ))),
                },
            };
            let answer = outcome.unwrap_or_else(|panic| {
                Err(ApiError::panicked(
                    panic.as_ref(),
                    &format!("line protocol call {name}"),
                    "call",
                ))
            });
            let micros = started.elapsed().as_micros() as u64;
            match &answer {
                Ok(_) => {
                    tracing::debug!(target: "interq::access", op = name, micros, client = %peer.ip(), "call")
                }
                Err(e) => {
                    tracing::debug!(target: "interq::access", op = name, status = e.status.as_u16(), code = e.code, micros, client = %peer.ip(), "call")
                }
            }
            Done {
                line: answer_line(&id, answer.as_deref()),
                order,
            }
        })))
    }

    /// `auth`: the key every later call of the connection presents.
    fn authenticate(&mut self, args: Option<Value>) -> Result<Value, ApiError> {
        let p = Body::from_args(args)?.params()?;
        p.only(&["key"])?;
        let key = p.required("key", p.string("key")?)?;
        let keys = &self.shared.state.keys;
        if !keys.enabled() {
            // As over HTTP, a key presented to an open server is ignored.
            return Ok(json!({"open": true}));
        }
        // A failed attempt leaves the connection with no key at all rather
        // than the last one that worked.
        self.caller = keys.identify(&key).filter(|c| !c.roles.is_empty());
        match &self.caller {
            Some(c) => Ok(json!({
                "roles": c.roles.iter().map(|r| r.as_str()).collect::<Vec<_>>(),
                "key": c.key,
            })),
            None => Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "`key`: the key is not valid",
            )),
        }
    }

    fn authorize(&self, access: Access, method: &str, op: &str) -> Result<(), ApiError> {
        if !self.shared.state.keys.enabled() {
            return Ok(());
        }
        match &self.caller {
            None => Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "this operation needs a key: send {\"op\": \"auth\", \"args\": {\"key\": \"<key>\"}} first",
            )),
            Some(c) if !access.allows(&c.roles, method) => Err(ApiError::forbidden(&c.roles, op)),
            Some(_) => Ok(()),
        }
    }
}

fn unknown_op(op: &str, testing: bool) -> ApiError {
    let mut known: Vec<&str> = vec!["auth", "ping"];
    known.extend(
        routes::endpoints()
            .iter()
            .filter(|e| testing || !e.testing_only)
            .filter_map(routes::Endpoint::op_name),
    );
    ApiError::new(
        StatusCode::NOT_FOUND,
        "unknown_op",
        format!(
            "`op`: there is no operation {op:?}; expected one of: {}",
            known.join(", ")
        ),
    )
}
