//! A running command's output, sent to the server as it comes (`POST
//! /task/log`) so that the task's log can be read and followed while it
//! runs. Standard output and error go into one stream, as a terminal shows
//! them. What is not yet sent is bounded: past it, the oldest is dropped and
//! the log says how much.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;

use crate::client::Client;
use crate::model::{TaskId, WorkerId};

/// The most one append carries.
const PIECE: usize = 64 * 1024;
/// The most held for sending; past it the oldest goes.
const HELD: usize = 1 << 20;
/// How long the last pieces may take to go once the command ended.
const LAST_SEND: Duration = Duration::from_secs(5);
/// A pause after an append the server found too soon.
const SOON: Duration = Duration::from_millis(250);

/// What the command wrote and the worker has not sent yet.
#[derive(Debug, Default)]
pub struct Pending {
    bytes: Vec<u8>,
    dropped: u64,
}

/// Shared by the readers of the command's pipes and the sender.
pub type Live = Arc<Mutex<Pending>>;

pub fn push(live: &Live, bytes: &[u8]) {
    let mut p = live.lock().unwrap_or_else(|e| e.into_inner());
    p.bytes.extend_from_slice(bytes);
    if p.bytes.len() > HELD {
        let over = p.bytes.len() - HELD;
        p.bytes.drain(..over);
        p.dropped += over as u64;
    }
}

/// The next piece to send: whole characters only (one cut at the end waits
/// for its rest), with a line about what was dropped before it.
fn take_piece(live: &Live, last: bool) -> Option<String> {
    let mut p = live.lock().unwrap_or_else(|e| e.into_inner());
    if p.bytes.is_empty() && p.dropped == 0 {
        return None;
    }
    let mut n = p.bytes.len().min(PIECE);
    if let Err(e) = std::str::from_utf8(&p.bytes[..n]) {
        if e.error_len().is_none() && !(last && n == p.bytes.len()) {
            n = e.valid_up_to();
        }
    }
    let mut text = String::new();
    if p.dropped > 0 {
        text = format!(
            "[interq worker: {} bytes of output not sent: the server did not keep up]\n",
            std::mem::take(&mut p.dropped)
        );
    }
    let piece: Vec<u8> = p.bytes.drain(..n).collect();
    text.push_str(&String::from_utf8_lossy(&piece));
    (!text.is_empty()).then_some(text)
}

fn put_back(live: &Live, text: &str) {
    let mut p = live.lock().unwrap_or_else(|e| e.into_inner());
    let mut bytes = text.as_bytes().to_vec();
    bytes.extend_from_slice(&p.bytes);
    p.bytes = bytes;
}

/// What one attempt to send came to.
enum Sent {
    /// Sent, or nothing to send.
    Done,
    /// Try again later (too soon, or the server did not answer).
    Later,
    /// The server will not take it (the task is no longer ours, logs are
    /// off): stop sending.
    Refused,
}

async fn send_one(
    client: &Client,
    worker: WorkerId,
    task: TaskId,
    live: &Live,
    last: bool,
) -> Sent {
    let Some(text) = take_piece(live, last) else {
        return Sent::Done;
    };
    match client.append_log(worker, task, &text).await {
        Ok(_) => Sent::Done,
        Err(e) if e.code() == Some("too_soon") => {
            put_back(live, &text);
            Sent::Later
        }
        Err(e)
            if matches!(
                e.code(),
                Some(
                    "logs_off"
                        | "task_not_running"
                        | "not_lease_holder"
                        | "unknown_task"
                        | "unknown_worker"
                )
            ) =>
        {
            tracing::debug!(task = %task, error = %e, "the server takes no more of this task's log");
            Sent::Refused
        }
        Err(e) => {
            tracing::debug!(task = %task, error = %e, "could not send the task's log; will retry");
            put_back(live, &text);
            Sent::Later
        }
    }
}

/// Sends what `live` gathers every `every` until `ended` turns true, then
/// the rest (for a few seconds at most) before the task is reported.
pub async fn stream(
    client: Client,
    worker: WorkerId,
    task: TaskId,
    live: Live,
    every: Duration,
    mut ended: watch::Receiver<bool>,
) {
    loop {
        let stop = tokio::select! {
            _ = tokio::time::sleep(every) => false,
            _ = ended.wait_for(|e| *e) => true,
        };
        if stop {
            break;
        }
        // More than a piece waiting: send on, as often as the server takes.
        loop {
            match send_one(&client, worker, task, &live, false).await {
                Sent::Refused => return,
                Sent::Later => break,
                Sent::Done => {}
            }
            let more = !live
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .bytes
                .is_empty();
            if !more || *ended.borrow() {
                break;
            }
            tokio::time::sleep(SOON).await;
        }
    }
    let deadline = tokio::time::Instant::now() + LAST_SEND;
    while tokio::time::Instant::now() < deadline {
        let empty = {
            let p = live.lock().unwrap_or_else(|e| e.into_inner());
            p.bytes.is_empty() && p.dropped == 0
        };
        if empty {
            return;
        }
        match send_one(&client, worker, task, &live, true).await {
            Sent::Refused => return,
            Sent::Later => tokio::time::sleep(SOON).await,
            Sent::Done => {}
        }
    }
    tracing::warn!(task = %task, "the end of the task's log could not be sent in time");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pieces_are_whole_characters_and_say_what_was_dropped() {
        let live = Live::default();
        let euro = "€".as_bytes();
        push(&live, b"ab");
        push(&live, &euro[..2]);
        assert_eq!(take_piece(&live, false).as_deref(), Some("ab"));
        push(&live, &euro[2..]);
        assert_eq!(take_piece(&live, false).as_deref(), Some("€"));
        assert_eq!(take_piece(&live, false), None);
        push(&live, &vec![b'x'; HELD + 10]);
        let first = take_piece(&live, false).unwrap();
        let (note, rest) = first.split_once('\n').unwrap();
        assert!(note.starts_with("[interq worker: 10 bytes of output not sent"));
        assert_eq!(rest.len(), PIECE);
        // The last piece goes as it is, a cut character replaced.
        let live = Live::default();
        push(&live, &euro[..1]);
        assert_eq!(take_piece(&live, false).as_deref(), None);
        assert_eq!(take_piece(&live, true).as_deref(), Some("\u{fffd}"));
    }
}
