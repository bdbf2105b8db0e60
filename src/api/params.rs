//! Request parameters from a JSON body or the query string, read by name with
//! an error that names the field.
//!
//! The seed's API takes the same parameters either way, so a query-string
//! value is text that may hold JSON: `data={"a":1}`, `queues=["a","b"]` (or
//! `queues=a,b`), `runAt=1764165000`, `singularlyRun=true`. Body fields win over
//! query fields of the same name.

use std::collections::HashSet;

use actix_web::http::StatusCode;
use actix_web::{dev, web, FromRequest, HttpRequest};
use futures_util::future::LocalBoxFuture;
use futures_util::StreamExt;
use serde_json::{Map, Value};

use super::error::ApiError;
use super::AppState;
use crate::config::LimitSettings;
use crate::model::{QueueName, TaskId, WorkerId};

/// The parameters of one request (or of one item of a batch).
#[derive(Debug, Default)]
pub struct Params {
    fields: Map<String, Value>,
    /// Names whose value came from the query string, as text.
    from_query: HashSet<String>,
    /// Prefix for error messages about batch items (`[3].`).
    prefix: String,
}

/// A request's body: nothing, an object of parameters, or a batch.
#[derive(Debug)]
pub enum Body {
    Params(Params),
    Batch(Vec<Value>),
}

/// Reads the body (up to `limit` bytes) and the query string.
async fn read(
    req: &HttpRequest,
    mut payload: dev::Payload,
    limit: usize,
) -> Result<Body, ApiError> {
    let mut bytes = web::BytesMut::new();
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|e| match e {
            actix_web::error::PayloadError::Overflow => ApiError::too_large(limit),
            e if super::admission::body_timed_out(&e) => ApiError::new(
                StatusCode::REQUEST_TIMEOUT,
                "body_timeout",
                "the request body did not arrive within limits.body_timeout_secs",
            ),
            other => ApiError::malformed_json(other),
        })?;
        if bytes.len() + chunk.len() > limit {
            return Err(ApiError::too_large(limit));
        }
        bytes.extend_from_slice(&chunk);
    }
    let mut params = Params::from_query(req.query_string())?;
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(Body::Params(params));
    }
    match serde_json::from_slice::<Value>(&bytes).map_err(ApiError::malformed_json)? {
        Value::Object(body) => {
            for (k, v) in body {
                params.from_query.remove(&k);
                params.fields.insert(k, v);
            }
            Ok(Body::Params(params))
        }
        Value::Array(items) if params.fields.is_empty() => Ok(Body::Batch(items)),
        Value::Array(_) => Err(invalid_body(
            "a batch body takes no query-string parameters",
        )),
        _ => Err(invalid_body(
            "the body must be a JSON object of parameters (or, to publish a batch, an array)",
        )),
    }
}

fn invalid_body(message: &str) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, "invalid_body", message)
}

/// Extracts the body and query string of any route; the body limit comes from
/// the settings.
impl FromRequest for Body {
    type Error = ApiError;
    type Future = LocalBoxFuture<'static, Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, payload: &mut dev::Payload) -> Self::Future {
        let req = req.clone();
        let payload = payload.take();
        Box::pin(async move {
            let limit = req
                .app_data::<web::Data<AppState>>()
                .map_or(LimitSettings::default().max_body_bytes, |s| {
                    s.settings.limits.max_body_bytes
                });
            read(&req, payload, limit).await
        })
    }
}

/// Extracts the parameters of a route that takes no batch.
impl FromRequest for Params {
    type Error = ApiError;
    type Future = LocalBoxFuture<'static, Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, payload: &mut dev::Payload) -> Self::Future {
        let body = Body::from_request(req, payload);
        Box::pin(async move { body.await?.params() })
    }
}

impl Body {
    /// The parameters of an operation that takes no batch.
    pub fn params(self) -> Result<Params, ApiError> {
        match self {
            Body::Params(p) => Ok(p),
            Body::Batch(_) => Err(invalid_body(
                "this route takes a JSON object of parameters, not an array",
            )),
        }
    }

    /// A body as the pipelined protocol carries it: `args`, an object of
    /// parameters or (where an operation takes one) an array.
    pub fn from_args(args: Option<Value>) -> Result<Self, ApiError> {
        match args {
            None | Some(Value::Null) => Ok(Body::Params(Params::default())),
            Some(Value::Object(fields)) => Ok(Body::Params(Params {
                fields,
                ..Params::default()
            })),
            Some(Value::Array(items)) => Ok(Body::Batch(items)),
            Some(_) => Err(ApiError::invalid(
                "args",
                "must be a JSON object of parameters (or, for a batch, an array)",
            )),
        }
    }
}

impl Params {
    fn from_query(query: &str) -> Result<Self, ApiError> {
        let pairs: Vec<(String, String)> = serde_urlencoded::from_str(query).map_err(|e| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_query",
                format!("the query string cannot be parsed: {e}"),
            )
        })?;
        let mut params = Params::default();
        for (k, v) in pairs {
            params.from_query.insert(k.clone());
            params.fields.insert(k, Value::String(v));
        }
        Ok(params)
    }

    /// The parameters inside the object parameter `field` (`task` of a
    /// schedule); errors name its fields as `field.name`.
    pub fn nested(&self, field: &str) -> Result<Option<Self>, ApiError> {
        Ok(self.object(field)?.map(|fields| Self {
            fields,
            from_query: HashSet::new(),
            prefix: format!("{}{field}.", self.prefix),
        }))
    }

    /// The parameters of each object in the array parameter `field`
    /// (`tasks` of a batch); errors name their fields as `field[i].name`.
    pub fn items(&self, field: &str) -> Result<Option<Vec<Self>>, ApiError> {
        let Some(value) = self.json(field)? else {
            return Ok(None);
        };
        let Value::Array(items) = value else {
            return Err(self.invalid(field, "must be an array of tasks"));
        };
        items
            .into_iter()
            .enumerate()
            .map(|(i, item)| match item {
                Value::Object(fields) => Ok(Self {
                    fields,
                    from_query: HashSet::new(),
                    prefix: format!("{}{field}[{i}].", self.prefix),
                }),
                _ => Err(self.invalid(&format!("{field}[{i}]"), "must be a JSON object")),
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Some)
    }

    /// The parameters of item `index` of a batch.
    pub fn item(index: usize, value: Value) -> Result<Self, ApiError> {
        match value {
            Value::Object(fields) => Ok(Self {
                fields,
                from_query: HashSet::new(),
                prefix: format!("[{index}]."),
            }),
            _ => Err(ApiError::invalid(
                &format!("[{index}]"),
                "each item of a batch must be a JSON object",
            )),
        }
    }

    fn name(&self, field: &str) -> String {
        format!("{}{field}", self.prefix)
    }

    /// An `invalid_field` error naming `field` as this request (or batch
    /// item) spells it.
    pub fn invalid(&self, field: &str, why: impl std::fmt::Display) -> ApiError {
        ApiError::invalid(&self.name(field), why)
    }

    /// Refuses parameters this route does not know: a misspelt option must
    /// not be silently ignored.
    pub fn only(&self, allowed: &[&str]) -> Result<(), ApiError> {
        match self.fields.keys().find(|k| !allowed.contains(&k.as_str())) {
            Some(k) => Err(ApiError::unknown_field(&self.name(k), allowed)),
            None => Ok(()),
        }
    }

    /// The raw value, with `null` read as absent.
    pub(super) fn get(&self, field: &str) -> Option<&Value> {
        self.fields.get(field).filter(|v| !v.is_null())
    }

    fn is_text(&self, field: &str) -> bool {
        self.from_query.contains(field)
    }

    /// Whether the parameter is given as `null` (JSON) or `null` (query text):
    /// "clear this setting".
    pub fn is_null(&self, field: &str) -> bool {
        match self.fields.get(field) {
            Some(Value::Null) => true,
            Some(Value::String(s)) => self.is_text(field) && s == "null",
            _ => false,
        }
    }

    /// Whether the parameter is present and not `false` (`?queues` counts).
    pub fn flag(&self, field: &str) -> bool {
        match self.fields.get(field) {
            None => false,
            Some(Value::Bool(b)) => *b,
            Some(Value::String(s)) => !matches!(s.as_str(), "false" | "0"),
            Some(_) => true,
        }
    }

    pub fn string(&self, field: &str) -> Result<Option<String>, ApiError> {
        match self.get(field) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(self.invalid(field, "must be a string")),
        }
    }

    pub fn required<T>(&self, field: &str, value: Option<T>) -> Result<T, ApiError> {
        value.ok_or_else(|| ApiError::missing(&self.name(field)))
    }

    /// Any JSON value; query text is parsed as JSON, or kept as a string when
    /// it is not JSON (so `interests=*` works).
    pub fn json(&self, field: &str) -> Result<Option<Value>, ApiError> {
        match self.get(field) {
            None => Ok(None),
            Some(Value::String(s)) if self.is_text(field) => Ok(Some(
                serde_json::from_str(s).unwrap_or_else(|_| Value::String(s.clone())),
            )),
            Some(v) => Ok(Some(v.clone())),
        }
    }

    pub fn object(&self, field: &str) -> Result<Option<Map<String, Value>>, ApiError> {
        match self.json(field)? {
            None => Ok(None),
            Some(Value::Object(m)) => Ok(Some(m)),
            Some(_) => Err(self.invalid(field, "must be a JSON object")),
        }
    }

    /// `object`, moving the value out instead of copying it (a task's `data`
    /// is the largest thing a request carries).
    pub fn take_object(&mut self, field: &str) -> Result<Option<Map<String, Value>>, ApiError> {
        if self.is_text(field) {
            return self.object(field);
        }
        match self.fields.remove(field) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Object(m)) => Ok(Some(m)),
            Some(_) => Err(self.invalid(field, "must be a JSON object")),
        }
    }

    pub fn number(&self, field: &str) -> Result<Option<f64>, ApiError> {
        let n = match self.get(field) {
            None => return Ok(None),
            Some(Value::Number(n)) => n.as_f64(),
            Some(Value::String(s)) if self.is_text(field) => s.trim().parse::<f64>().ok(),
            Some(_) => None,
        };
        match n {
            Some(n) if n.is_finite() => Ok(Some(n)),
            _ => Err(self.invalid(field, "must be a number")),
        }
    }

    /// A whole number within `min..=max`.
    pub fn integer(&self, field: &str, min: u64, max: u64) -> Result<Option<u64>, ApiError> {
        match self.number(field)? {
            None => Ok(None),
            Some(n) if n.fract() == 0.0 && n >= min as f64 && n <= max as f64 => Ok(Some(n as u64)),
            Some(_) => {
                Err(self.invalid(field, format!("must be a whole number from {min} to {max}")))
            }
        }
    }

    pub fn boolean(&self, field: &str) -> Result<Option<bool>, ApiError> {
        match self.get(field) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(Value::String(s)) if self.is_text(field) => match s.as_str() {
                "true" | "1" | "" => Ok(Some(true)),
                "false" | "0" => Ok(Some(false)),
                _ => Err(self.invalid(field, "must be true or false")),
            },
            Some(_) => Err(self.invalid(field, "must be true or false")),
        }
    }

    pub fn queue(&self, field: &str) -> Result<Option<QueueName>, ApiError> {
        self.string(field)?
            .map(|s| QueueName::parse(&s).map_err(|e| self.invalid(field, e)))
            .transpose()
    }

    pub fn task_id(&self, field: &str) -> Result<Option<TaskId>, ApiError> {
        self.string(field)?
            .map(|s| s.parse().map_err(|e| self.invalid(field, e)))
            .transpose()
    }

    pub fn worker_id(&self, field: &str) -> Result<Option<WorkerId>, ApiError> {
        self.string(field)?
            .map(|s| s.parse().map_err(|e| self.invalid(field, e)))
            .transpose()
    }

    /// A list of queue names: a JSON array of strings, or in the query string
    /// a JSON array or names separated by commas.
    pub fn queues(&self, field: &str) -> Result<Option<Vec<QueueName>>, ApiError> {
        let Some(items) = self.list(field, "queue names")? else {
            return Ok(None);
        };
        items
            .iter()
            .enumerate()
            .map(|(i, v)| match v {
                Value::String(s) => {
                    QueueName::parse(s).map_err(|e| self.invalid(&format!("{field}[{i}]"), e))
                }
                _ => Err(self.invalid(&format!("{field}[{i}]"), "must be a queue name (a string)")),
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Some)
    }

    /// A list of task ids (at most `max`), given as `queues` takes names.
    pub fn task_ids(&self, field: &str, max: usize) -> Result<Option<Vec<TaskId>>, ApiError> {
        let Some(items) = self.list(field, "task ids")? else {
            return Ok(None);
        };
        if items.is_empty() || items.len() > max {
            return Err(self.invalid(field, format!("must hold 1 to {max} task ids")));
        }
        items
            .iter()
            .enumerate()
            .map(|(i, v)| {
                let at = || format!("{field}[{i}]");
                match v {
                    Value::String(s) => s.parse().map_err(|e| self.invalid(&at(), e)),
                    _ => Err(self.invalid(&at(), "must be a task id (a string)")),
                }
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Some)
    }

    /// A list's items: a JSON array, or in the query string a JSON array or
    /// items separated by commas.
    fn list(&self, field: &str, what: &str) -> Result<Option<Vec<Value>>, ApiError> {
        Ok(Some(match self.get(field) {
            None => return Ok(None),
            Some(Value::Array(items)) => items.clone(),
            Some(Value::String(s)) if self.is_text(field) => match serde_json::from_str(s) {
                Ok(Value::Array(items)) => items,
                _ => s
                    .split(',')
                    .map(|q| Value::String(q.trim().to_owned()))
                    .collect(),
            },
            Some(_) => return Err(self.invalid(field, format!("must be an array of {what}"))),
        }))
    }
}
