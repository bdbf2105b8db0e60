//! The client side: one connection shared by every caller, as many calls in
//! flight as they make, each answer handed back by its id. A connection that
//! breaks fails the calls it carried and is dialled again by the next call.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};

use crate::client::{ClientError, ClientOptions};

type Result<T> = std::result::Result<T, ClientError>;
type Reply = Result<Box<RawValue>>;

/// Longest answer line read: a claim of many large tasks is long, but not
/// without end.
const MAX_ANSWER_BYTES: usize = 256 << 20;

/// A client of one interq's line protocol (`interq://host:port`, or
/// `interqs://host:port` for TLS).
pub struct LineClient {
    addr: String,
    tls: Option<(
        tokio_rustls::TlsConnector,
        rustls::pki_types::ServerName<'static>,
    )>,
    key: Option<String>,
    conn: tokio::sync::Mutex<Option<Arc<Conn>>>,
}

impl std::fmt::Debug for LineClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LineClient")
            .field("addr", &self.addr)
            .field("tls", &self.tls.is_some())
            .field("key", &self.key.as_ref().map(|_| ".."))
            .finish()
    }
}

/// One open connection.
struct Conn {
    lines: mpsc::UnboundedSender<Vec<u8>>,
    waiting: Mutex<Waiting>,
    next_id: AtomicU64,
}

#[derive(Default)]
struct Waiting {
    calls: HashMap<u64, oneshot::Sender<Reply>>,
    /// Why the connection ended, once it has: later calls fail at once.
    closed: Option<Ended>,
}

/// Why a connection ended.
#[derive(Debug, Clone)]
enum Ended {
    /// The server refused it (past its connection caps) with this answer.
    Refused {
        status: u16,
        code: String,
        message: String,
    },
    Broken(String),
}

impl Ended {
    fn error(&self) -> ClientError {
        match self.clone() {
            Ended::Refused {
                status,
                code,
                message,
            } => ClientError::Api {
                status,
                code,
                message,
            },
            Ended::Broken(why) => ClientError::Connection(why),
        }
    }
}

impl Conn {
    /// Fails every call still waiting, and those made later.
    fn close(&self, why: Ended) {
        let mut waiting = self.waiting.lock().expect("not poisoned");
        for (_, tx) in waiting.calls.drain() {
            let _ = tx.send(Err(why.error()));
        }
        waiting.closed.get_or_insert(why);
    }

    fn is_closed(&self) -> bool {
        self.waiting.lock().expect("not poisoned").closed.is_some()
    }
}

#[derive(Deserialize)]
struct AnswerLine {
    id: Option<u64>,
    ok: Option<Box<RawValue>>,
    error: Option<ErrorBody>,
}

#[derive(Deserialize)]
struct ErrorBody {
    status: u16,
    code: String,
    message: String,
}

#[derive(Serialize)]
struct CallLine<'a, A: ?Sized> {
    id: u64,
    op: &'a str,
    args: &'a A,
}

impl LineClient {
    /// A client for `url`; it connects on its first call.
    pub fn new(url: &str, options: &ClientOptions) -> Result<Self> {
        let (tls, rest) = if let Some(rest) = url.strip_prefix("interq://") {
            (false, rest)
        } else if let Some(rest) = url.strip_prefix("interqs://") {
            (true, rest)
        } else {
            return Err(ClientError::BadUrl(url.to_owned()));
        };
        let addr = rest.trim_end_matches('/');
        let host = match addr.rsplit_once(':') {
            Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok() => host,
            _ => return Err(ClientError::BadUrl(url.to_owned())),
        };
        let tls = if tls {
            crate::client::install_tls_provider();
            let config = match &options.ca_pem {
                Some(pem) => {
                    use rustls::pki_types::pem::PemObject;
                    let mut roots = rustls::RootCertStore::empty();
                    for cert in rustls::pki_types::CertificateDer::pem_slice_iter(pem) {
                        let cert = cert.map_err(|e| ClientError::Tls(e.to_string()))?;
                        roots
                            .add(cert)
                            .map_err(|e| ClientError::Tls(e.to_string()))?;
                    }
                    rustls::ClientConfig::builder()
                        .with_root_certificates(roots)
                        .with_no_client_auth()
                }
                None => {
                    use rustls_platform_verifier::ConfigVerifierExt;
                    rustls::ClientConfig::with_platform_verifier()
                        .map_err(|e| ClientError::Tls(e.to_string()))?
                }
            };
            let name = rustls::pki_types::ServerName::try_from(
                host.trim_start_matches('[')
                    .trim_end_matches(']')
                    .to_owned(),
            )
            .map_err(|_| ClientError::BadUrl(url.to_owned()))?;
            Some((tokio_rustls::TlsConnector::from(Arc::new(config)), name))
        } else {
            None
        };
        Ok(Self {
            addr: addr.to_owned(),
            tls,
            key: options.key.clone(),
            conn: tokio::sync::Mutex::new(None),
        })
    }

    /// Calls `op` with `args`; its `ok` decoded as `T`.
    pub async fn call<A, T>(&self, op: &str, args: &A) -> Result<T>
    where
        A: Serialize + ?Sized,
        T: DeserializeOwned,
    {
        let raw = self.call_raw(op, args).await?;
        serde_json::from_str(raw.get()).map_err(|e| ClientError::Decode(e.to_string()))
    }

    async fn call_raw<A: Serialize + ?Sized>(&self, op: &str, args: &A) -> Reply {
        let conn = self.connection().await?;
        send(&conn, op, args).await
    }

    /// The open connection, or a new one (with the key presented).
    async fn connection(&self) -> Result<Arc<Conn>> {
        let mut slot = self.conn.lock().await;
        if let Some(conn) = slot.as_ref().filter(|c| !c.is_closed()) {
            return Ok(Arc::clone(conn));
        }
        let tcp = TcpStream::connect(&self.addr)
            .await
            .map_err(|e| ClientError::Connection(format!("connecting to {}: {e}", self.addr)))?;
        let _ = tcp.set_nodelay(true);
        let conn = match &self.tls {
            None => start(tcp),
            Some((connector, name)) => {
                let tls = connector
                    .connect(name.clone(), tcp)
                    .await
                    .map_err(|e| ClientError::Tls(e.to_string()))?;
                start(tls)
            }
        };
        if let Some(key) = &self.key {
            send(&conn, "auth", &serde_json::json!({"key": key})).await?;
        }
        *slot = Some(Arc::clone(&conn));
        Ok(conn)
    }
}

/// Sends one call on `conn` and waits for its answer.
async fn send<A: Serialize + ?Sized>(conn: &Conn, op: &str, args: &A) -> Reply {
    let id = conn.next_id.fetch_add(1, Ordering::Relaxed);
    let mut line = serde_json::to_vec(&CallLine { id, op, args })
        .map_err(|e| ClientError::Decode(e.to_string()))?;
    line.push(b'\n');
    let (tx, rx) = oneshot::channel();
    {
        let mut waiting = conn.waiting.lock().expect("not poisoned");
        if let Some(why) = &waiting.closed {
            return Err(why.error());
        }
        waiting.calls.insert(id, tx);
    }
    // Forgets the call if its caller stops waiting.
    struct Forget<'a>(&'a Conn, u64);
    impl Drop for Forget<'_> {
        fn drop(&mut self) {
            if let Ok(mut w) = self.0.waiting.lock() {
                w.calls.remove(&self.1);
            }
        }
    }
    let _forget = Forget(conn, id);
    if conn.lines.send(line).is_err() {
        return Err(ClientError::Connection("the connection is closed".into()));
    }
    rx.await
        .unwrap_or_else(|_| Err(ClientError::Connection("the connection is closed".into())))
}

/// Starts the writer and reader of a new connection.
fn start<S>(stream: S) -> Arc<Conn>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (rd, mut wr) = tokio::io::split(stream);
    let (lines, mut queued) = mpsc::unbounded_channel::<Vec<u8>>();
    let conn = Arc::new(Conn {
        lines,
        waiting: Mutex::new(Waiting::default()),
        next_id: AtomicU64::new(1),
    });
    // Writes calls in batches: whatever is queued goes out in one write.
    let writer = Arc::downgrade(&conn);
    tokio::spawn(async move {
        let mut batch = Vec::new();
        while let Some(line) = queued.recv().await {
            batch.clear();
            batch.extend_from_slice(&line);
            while batch.len() < 256 << 10 {
                match queued.try_recv() {
                    Ok(more) => batch.extend_from_slice(&more),
                    Err(_) => break,
                }
            }
            let written = async {
                wr.write_all(&batch).await?;
                wr.flush().await
            }
            .await;
            if let Err(e) = written {
                if let Some(conn) = writer.upgrade() {
                    conn.close(Ended::Broken(format!("writing to interq: {e}")));
                }
                return;
            }
        }
        let _ = wr.shutdown().await;
    });
    let reader = Arc::clone(&conn);
    tokio::spawn(async move {
        let why = read_answers(rd, &reader).await;
        reader.close(why);
    });
    conn
}

/// Hands each answer to its call until the connection ends; says why it did.
async fn read_answers<R: AsyncRead + Unpin>(rd: R, conn: &Conn) -> Ended {
    let broken = |why: String| Ended::Broken(why);
    let mut rd = BufReader::with_capacity(64 << 10, rd);
    let mut line = Vec::new();
    loop {
        line.clear();
        match (&mut rd)
            .take(MAX_ANSWER_BYTES as u64)
            .read_until(b'\n', &mut line)
            .await
        {
            Ok(0) => return broken("interq closed the connection".into()),
            Ok(_) if !line.ends_with(b"\n") && line.len() >= MAX_ANSWER_BYTES => {
                return broken("an answer from interq was too long".into())
            }
            Ok(_) => {}
            Err(e) => return broken(format!("reading from interq: {e}")),
        }
        let answer: AnswerLine = match serde_json::from_slice(&line) {
            Ok(a) => a,
            Err(e) => return broken(format!("interq answered a line that is not an answer: {e}")),
        };
        let reply = match (answer.ok, answer.error) {
            (Some(ok), _) => Ok(ok),
            (None, Some(e)) => Err(ClientError::Api {
                status: e.status,
                code: e.code,
                message: e.message,
            }),
            (None, None) => Err(ClientError::Decode(
                "an answer with neither ok nor error".into(),
            )),
        };
        match answer.id {
            Some(id) => {
                let tx = conn.waiting.lock().expect("not poisoned").calls.remove(&id);
                if let Some(tx) = tx {
                    let _ = tx.send(reply);
                }
            }
            // Not an answer to a call: the server refusing the connection
            // (too many) or a line it could not read. Every call fails
            // with it.
            None => {
                return match reply {
                    Err(ClientError::Api {
                        status,
                        code,
                        message,
                    }) => Ended::Refused {
                        status,
                        code,
                        message,
                    },
                    _ => broken("interq answered without an id".into()),
                }
            }
        }
    }
}
