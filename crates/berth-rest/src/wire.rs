//! How the reference server writes answers: Python 2 `json.dumps` defaults (`", "` and
//! `": "` separators, non-ASCII escaped as `\uXXXX`), `Content-Type: application/json`
//! exactly, canned bodies, and Django 1.8's upper-case reason phrases on 403 and 404
//! (uwsgiit-py shows the phrase to users and its tests look for `FORBIDDEN`).

use std::io;

use axum::body::Body;
use axum::http::{header, HeaderValue, Response, StatusCode};
use hyper::ext::ReasonPhrase;
use serde::Serialize;
use serde_json::ser::Formatter;

pub type Reply = Response<Body>;

/// serde_json formatter reproducing Python's `json.dumps` defaults.
struct PythonFormatter;

impl Formatter for PythonFormatter {
    fn begin_array_value<W: ?Sized + io::Write>(&mut self, w: &mut W, first: bool) -> io::Result<()> {
        if first {
            Ok(())
        } else {
            w.write_all(b", ")
        }
    }

    fn begin_object_key<W: ?Sized + io::Write>(&mut self, w: &mut W, first: bool) -> io::Result<()> {
        if first {
            Ok(())
        } else {
            w.write_all(b", ")
        }
    }

    fn begin_object_value<W: ?Sized + io::Write>(&mut self, w: &mut W) -> io::Result<()> {
        w.write_all(b": ")
    }

    fn write_string_fragment<W: ?Sized + io::Write>(&mut self, w: &mut W, fragment: &str) -> io::Result<()> {
        for c in fragment.chars() {
            if c.is_ascii() {
                w.write_all(&[c as u8])?;
            } else {
                let mut units = [0u16; 2];
                for unit in c.encode_utf16(&mut units) {
                    write!(w, "\\u{unit:04x}")?;
                }
            }
        }
        Ok(())
    }
}

/// A value as the reference would print it.
pub fn to_python_json<T: Serialize + ?Sized>(value: &T) -> String {
    let mut out = Vec::new();
    let mut ser = serde_json::Serializer::with_formatter(&mut out, PythonFormatter);
    if value.serialize(&mut ser).is_err() {
        return "null".to_owned();
    }
    // The formatter only writes ASCII.
    String::from_utf8(out).unwrap_or_default()
}

fn with_reason(mut response: Reply) -> Reply {
    let phrase: Option<&'static [u8]> = match response.status() {
        StatusCode::FORBIDDEN => Some(b"FORBIDDEN"),
        StatusCode::NOT_FOUND => Some(b"NOT FOUND"),
        _ => None,
    };
    if let Some(phrase) = phrase {
        response.extensions_mut().insert(ReasonPhrase::from_static(phrase));
    }
    response
}

/// A JSON answer with the reference's serialisation.
pub fn json<T: Serialize + ?Sized>(status: StatusCode, value: &T) -> Reply {
    raw_json(status, to_python_json(value))
}

/// A JSON answer whose text is already made (stored metric series are served verbatim).
pub fn raw_json(status: StatusCode, text: String) -> Reply {
    let mut response = Response::new(Body::from(text));
    *response.status_mut() = status;
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    with_reason(response)
}

pub fn ok_json<T: Serialize + ?Sized>(value: &T) -> Reply {
    json(StatusCode::OK, value)
}

fn canned(status: StatusCode, key: &str, message: &str) -> Reply {
    // Canned bodies are fixed strings in the reference; keep their exact bytes.
    raw_json(status, format!("{{\"{key}\": \"{message}\"}}"))
}

pub fn unauthorized() -> Reply {
    let mut r = canned(StatusCode::UNAUTHORIZED, "error", "Unauthorized");
    r.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Basic realm=\"uwsgi.it api\""));
    r
}
pub fn forbidden() -> Reply {
    canned(StatusCode::FORBIDDEN, "error", "Forbidden")
}
/// The metrics routes' 403: plain text, as the reference (Q22).
pub fn forbidden_text() -> Reply {
    let mut response = Response::new(Body::from("Forbidden\n"));
    *response.status_mut() = StatusCode::FORBIDDEN;
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
    with_reason(response)
}
pub fn not_found() -> Reply {
    canned(StatusCode::NOT_FOUND, "error", "Not found")
}
pub fn method_not_allowed() -> Reply {
    canned(StatusCode::METHOD_NOT_ALLOWED, "error", "Method not allowed")
}
pub fn conflict() -> Reply {
    canned(StatusCode::CONFLICT, "error", "Conflict")
}
/// A conflict with the reason the reference gives when it gives one.
pub fn conflict_because(status: StatusCode, reason: &str) -> Reply {
    json(status, &serde_json::json!({ "error": "Conflict", "reason": reason }))
}
pub fn too_large() -> Reply {
    canned(StatusCode::PAYLOAD_TOO_LARGE, "error", "Request entity too large")
}
pub fn range_bad() -> Reply {
    canned(StatusCode::RANGE_NOT_SATISFIABLE, "error", "Requested Range Not Satisfiable")
}
pub fn bad_request() -> Reply {
    canned(StatusCode::BAD_REQUEST, "error", "Bad Request")
}
pub fn ok_message() -> Reply {
    canned(StatusCode::OK, "message", "Ok")
}
pub fn internal() -> Reply {
    canned(StatusCode::INTERNAL_SERVER_ERROR, "error", "Internal Server Error")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn python_separators_and_ascii() {
        let v = serde_json::json!({"uid": 30001, "list": [1, 2], "name": "caffè ☕ 𝄞"});
        assert_eq!(to_python_json(&v), r#"{"list": [1, 2], "name": "caff\u00e8 \u2615 \ud834\udd1e", "uid": 30001}"#);
    }

    #[test]
    fn reason_phrases() {
        let r = forbidden();
        assert_eq!(r.extensions().get::<ReasonPhrase>().map(|p| p.as_bytes()), Some(&b"FORBIDDEN"[..]));
        assert!(ok_message().extensions().get::<ReasonPhrase>().is_none());
    }
}
