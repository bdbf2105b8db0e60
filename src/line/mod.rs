//! The pipelined protocol: the API's operations as JSON calls, one per line,
//! over TCP (or TLS), with many calls in flight on one connection.
//!
//! A call is `{"id": 7, "op": "publish", "args": {...}}`; its answer is
//! `{"id": 7, "ok": <what HTTP answers with 200>}` or
//! `{"id": 7, "error": {"status": 400, "code": "...", "message": "..."}}`.
//! Answers come as calls finish, not in the order sent: the `id` (any
//! number or string the caller picks) pairs them. The operations, their
//! parameters, checks and errors are the HTTP API's own (`api::routes`
//! names each one); `auth` presents a key for the rest of the connection and
//! `ping` answers at once. docs/protocol.md is the reference.

pub mod client;
mod server;

pub use server::LineServer;

use serde_json::Value;

use crate::api::error::ApiError;

/// Answers a call: `{"id":…,"ok":…}` or `{"id":…,"error":{…}}`, one line.
fn answer_line(id: &Value, answer: Result<&[u8], &ApiError>) -> Vec<u8> {
    let id = serde_json::to_vec(id).unwrap_or_else(|_| b"null".to_vec());
    match answer {
        Ok(ok) => {
            let mut line = Vec::with_capacity(ok.len() + id.len() + 16);
            line.extend_from_slice(b"{\"id\":");
            line.extend_from_slice(&id);
            line.extend_from_slice(b",\"ok\":");
            line.extend_from_slice(ok);
            line.extend_from_slice(b"}\n");
            line
        }
        Err(e) => {
            let error = serde_json::json!({
                "status": e.status.as_u16(),
                "code": e.code,
                "message": e.message,
            });
            let mut line = Vec::with_capacity(id.len() + 128);
            line.extend_from_slice(b"{\"id\":");
            line.extend_from_slice(&id);
            line.extend_from_slice(b",\"error\":");
            line.extend_from_slice(error.to_string().as_bytes());
            line.extend_from_slice(b"}\n");
            line
        }
    }
}

/// A call, read from one line.
#[derive(Debug)]
struct Request {
    id: Value,
    op: String,
    args: Option<Value>,
}

impl Request {
    /// Reads a line. On a refusal, the id when one could be read, so that
    /// the caller still knows which call was refused.
    fn parse(line: &[u8]) -> Result<Self, (Value, ApiError)> {
        let value: Value =
            serde_json::from_slice(line).map_err(|e| (Value::Null, malformed_line(e)))?;
        let Value::Object(mut fields) = value else {
            return Err((
                Value::Null,
                ApiError::new(
                    actix_web::http::StatusCode::BAD_REQUEST,
                    "invalid_body",
                    "a call is a JSON object: {\"id\": 1, \"op\": \"ping\"}",
                ),
            ));
        };
        let id = fields.remove("id").unwrap_or(Value::Null);
        if !matches!(id, Value::Null | Value::Number(_) | Value::String(_)) {
            return Err((
                Value::Null,
                ApiError::invalid("id", "must be a number or a string"),
            ));
        }
        if let Some(other) = fields.keys().find(|k| !matches!(k.as_str(), "op" | "args")) {
            return Err((id, ApiError::unknown_field(other, &["id", "op", "args"])));
        }
        let op = match fields.remove("op") {
            Some(Value::String(op)) => op,
            Some(_) => return Err((id, ApiError::invalid("op", "must be a string"))),
            None => return Err((id, ApiError::missing("op"))),
        };
        Ok(Self {
            id,
            op,
            args: fields.remove("args"),
        })
    }
}

fn malformed_line(why: serde_json::Error) -> ApiError {
    ApiError::new(
        actix_web::http::StatusCode::BAD_REQUEST,
        "malformed_json",
        format!("the line is not valid JSON: {why}"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_call_is_read_with_its_id() {
        let r = Request::parse(br#"{"id": "a", "op": "publish", "args": {"data": {}}}"#).unwrap();
        assert_eq!(r.id, json!("a"));
        assert_eq!(r.op, "publish");
        assert_eq!(r.args, Some(json!({"data": {}})));
    }

    #[test]
    fn refusals_keep_the_id_when_there_is_one() {
        let (id, e) = Request::parse(br#"{"id": 3, "args": {}}"#).unwrap_err();
        assert_eq!((id, e.code), (json!(3), "missing_field"));
        let (id, e) = Request::parse(br#"{"id": 4, "op": "ping", "key": "x"}"#).unwrap_err();
        assert_eq!((id, e.code), (json!(4), "unknown_field"));
        let (id, e) = Request::parse(br#"{"id": [1], "op": "ping"}"#).unwrap_err();
        assert_eq!((id, e.code), (Value::Null, "invalid_field"));
        let (_, e) = Request::parse(b"{\"id\": 1, ").unwrap_err();
        assert_eq!(e.code, "malformed_json");
        let (_, e) = Request::parse(b"[1]").unwrap_err();
        assert_eq!(e.code, "invalid_body");
    }

    #[test]
    fn answers_are_one_line_each() {
        let ok = answer_line(&json!(1), Ok(br#"{"a":1}"#));
        assert_eq!(ok, b"{\"id\":1,\"ok\":{\"a\":1}}\n");
        let e = ApiError::missing("op");
        let line = answer_line(&json!("x"), Err(&e));
        let back: Value = serde_json::from_slice(&line).unwrap();
        assert_eq!(back["id"], "x");
        assert_eq!(back["error"]["status"], 400);
        assert_eq!(back["error"]["code"], "missing_field");
        assert_eq!(line.iter().filter(|b| **b == b'\n').count(), 1);
    }
}
