//! Request bodies (spec §1.2): JSON whatever the Content-Type, at most 64 KiB (413 beyond,
//! judged by the bytes received when Content-Length is missing — Q27 fixed), invalid JSON
//! answered 400 (Q28 fixed) instead of a crash.

use axum::body::{Body, Bytes};
use axum::extract::{FromRequest, Request};
use axum::http::header;
use serde_json::Value;

use crate::wire::{self, Reply};

/// The reference's limit on request bodies.
pub const MAX_BODY: usize = 65536;

/// Oversized bodies up to this size are read to the end before the 413 goes out (a
/// connection closed on unread data resets and loses the answer); beyond it the connection
/// is simply closed after the answer.
const DRAIN_LIMIT: usize = 1 << 20;

/// The raw body, size-checked.
pub struct RawBody(pub Bytes);

impl<S: Send + Sync> FromRequest<S> for RawBody {
    type Rejection = Reply;

    async fn from_request(req: Request, _state: &S) -> Result<Self, Reply> {
        let declared = req
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok());
        let body: Body = req.into_body();
        if declared.is_some_and(|len| len > MAX_BODY as u64) {
            // Read (and drop) a moderately oversized body before answering, so the client,
            // still sending, gets the 413 instead of a connection reset.
            if declared.is_some_and(|len| len <= DRAIN_LIMIT as u64) {
                let _ = axum::body::to_bytes(body, DRAIN_LIMIT).await;
            }
            return Err(wire::too_large());
        }
        match axum::body::to_bytes(body, DRAIN_LIMIT).await {
            Ok(bytes) if bytes.len() <= MAX_BODY => Ok(RawBody(bytes)),
            _ => Err(wire::too_large()),
        }
    }
}

pub fn parse(bytes: &[u8]) -> Result<Value, Reply> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(Value::Null);
    }
    serde_json::from_slice(bytes).map_err(|_| wire::bad_request())
}

/// Python truthiness of a JSON value: `null`, `false`, `0`, `""`, `[]`, `{}` are falsy.
pub fn is_falsy(value: &Value) -> bool {
    match value {
        Value::Null => true,
        Value::Bool(b) => !b,
        Value::Number(n) => n.as_f64() == Some(0.0),
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
    }
}

/// The body as a JSON object; anything else (`null` included) is 400.
pub fn object(raw: &[u8]) -> Result<serde_json::Map<String, Value>, Reply> {
    match parse(raw)? {
        Value::Object(o) => Ok(o),
        _ => Err(wire::bad_request()),
    }
}

/// Like [`object`], but an empty or `null` body is an empty object (routes where `{}` is a
/// harmless no-op).
pub fn object_or_empty(raw: &[u8]) -> Result<serde_json::Map<String, Value>, Reply> {
    match parse(raw)? {
        Value::Object(o) => Ok(o),
        Value::Null => Ok(serde_json::Map::new()),
        _ => Err(wire::bad_request()),
    }
}
