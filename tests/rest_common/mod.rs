//! Helpers shared by the REST shim tests (`rest_*.rs`): plain HTTP requests through reqwest,
//! raw HTTP/1.1 exchanges over a TCP socket (to see the literal status line and send
//! chunked bodies), the real `curl` binary, and a dnsmasq serving TXT records.
//!
//! Used together with `tests/common` (the harness); include both:
//! `mod common; mod rest_common;`.
#![allow(dead_code)]

use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::common::{Auth, Berth};

/// An answer of the REST shim.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    /// The literal reason phrase of the status line (raw/curl exchanges only; reqwest
    /// answers carry the canonical phrase).
    pub reason: String,
    pub headers: Vec<(String, String)>,
    pub text: String,
}

impl Reply {
    /// The first header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    /// The body as JSON; panics (with the body) when it is not JSON.
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.text)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?} (status {})", self.text, self.status))
    }

    /// Asserts the status and `Content-Type: application/json` exactly; returns the JSON.
    #[track_caller]
    pub fn expect_json(&self, status: u16) -> Value {
        assert_eq!(self.status, status, "unexpected status; body: {}", self.text);
        assert_eq!(self.header("content-type"), Some("application/json"), "content type of {}", self.text);
        self.json()
    }

    /// Asserts status and the exact body text.
    #[track_caller]
    pub fn expect(&self, status: u16, body: &str) {
        assert_eq!((self.status, self.text.as_str()), (status, body), "unexpected answer");
    }
}

/// Sends one request through reqwest. `body` is sent as given, without a Content-Type.
pub async fn call(b: &Berth, method: &str, path: &str, auth: &Auth, body: Option<&str>) -> Reply {
    call_with(b, method, path, auth, body, &[]).await
}

/// Like [`call`] with extra headers.
pub async fn call_with(
    b: &Berth,
    method: &str,
    path: &str,
    auth: &Auth,
    body: Option<&str>,
    headers: &[(&str, &str)],
) -> Reply {
    let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
    let mut req = b.http().request(method.clone(), b.url(path));
    if let Some(v) = auth.header() {
        req = req.header(reqwest::header::AUTHORIZATION, v);
    }
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    if let Some(body) = body {
        req = req.body(body.to_owned());
    }
    let resp = req.send().await.unwrap_or_else(|e| panic!("{method} {path}: {e}"));
    let status = resp.status();
    let headers =
        resp.headers().iter().map(|(k, v)| (k.as_str().to_owned(), v.to_str().unwrap_or("").to_owned())).collect();
    let text = resp.text().await.expect("body");
    Reply { status: status.as_u16(), reason: status.canonical_reason().unwrap_or("").to_owned(), headers, text }
}

/// Shorthands.
pub async fn get(b: &Berth, path: &str, auth: &Auth) -> Reply {
    call(b, "GET", path, auth, None).await
}
pub async fn post(b: &Berth, path: &str, auth: &Auth, body: &str) -> Reply {
    call(b, "POST", path, auth, Some(body)).await
}
pub async fn delete(b: &Berth, path: &str, auth: &Auth, body: Option<&str>) -> Reply {
    call(b, "DELETE", path, auth, body).await
}

/// One raw HTTP/1.1 exchange: `head` is everything before the body (request line and headers
/// without the final blank line; `Host` and `Connection: close` are added), `body` the
/// bytes sent after it as they are. Returns the literal status line parts.
pub async fn raw(b: &Berth, head: &str, body: &[u8]) -> Reply {
    let mut stream = tokio::net::TcpStream::connect(b.addr).await.expect("connect");
    let mut request = format!("{head}\r\nHost: {}\r\nConnection: close\r\n\r\n", b.addr).into_bytes();
    request.extend_from_slice(body);
    stream.write_all(&request).await.expect("write request");
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(60), stream.read_to_end(&mut out))
        .await
        .expect("raw answer in time")
        .expect("read answer");
    parse_http(&out)
}

/// Parses an HTTP/1.1 answer (status line, headers, body; chunked bodies are decoded).
pub fn parse_http(bytes: &[u8]) -> Reply {
    let text = String::from_utf8_lossy(bytes).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let mut parts = status_line.splitn(3, ' ');
    let _version = parts.next();
    let status: u16 =
        parts.next().and_then(|s| s.parse().ok()).unwrap_or_else(|| panic!("status line {status_line:?}"));
    let reason = parts.next().unwrap_or("").to_owned();
    let headers: Vec<(String, String)> =
        lines.filter_map(|l| l.split_once(':')).map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned())).collect();
    let chunked = headers.iter().any(|(k, v)| k.eq_ignore_ascii_case("transfer-encoding") && v.contains("chunked"));
    let text = if chunked { dechunk(body) } else { body.to_owned() };
    Reply { status, reason, headers, text }
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else { break };
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        body = rest[n..].strip_prefix("\r\n").unwrap_or(&rest[n..]);
    }
    out
}

/// `Authorization: Basic …` header line for raw requests.
pub fn basic_line(user: &str, password: &str) -> String {
    format!("Authorization: {}", Auth::basic(user, password).header().unwrap())
}

/// Runs the real `curl` with `args` (plus `-sS -i` to see the answer) and parses its output.
/// With several answers (e.g. a 100-continue) the last one is returned.
pub async fn curl(args: &[String]) -> Reply {
    let out = tokio::process::Command::new("curl")
        .args(["-sS", "-i", "--max-time", "60"])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .await
        .expect("run curl");
    assert!(out.status.success(), "curl {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    let mut bytes: &[u8] = &out.stdout;
    // Skip interim answers (`HTTP/1.1 100 Continue`).
    loop {
        let text = String::from_utf8_lossy(bytes);
        let interim = text.starts_with("HTTP/1.1 1");
        match (interim, find(bytes, b"\r\n\r\n")) {
            (true, Some(end)) => bytes = &bytes[end + 4..],
            _ => break,
        }
    }
    parse_http(bytes)
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Splits a shell command line the way `sh` would for the seed documents' commands: words
/// separated by blanks, single-quoted parts taken literally.
pub fn shell_words(line: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut current = String::new();
    let mut in_word = false;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            '\'' => {
                in_word = true;
                for q in chars.by_ref() {
                    if q == '\'' {
                        break;
                    }
                    current.push(q);
                }
            }
            c if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut current));
                    in_word = false;
                }
            }
            c => {
                in_word = true;
                current.push(c);
            }
        }
    }
    if in_word {
        words.push(current);
    }
    words
}

/// Whether a JSON text uses Python's `json.dumps` separators (`", "` and `": "`), checked on
/// the serialisation outside strings.
pub fn python_separators(text: &str) -> bool {
    let mut in_string = false;
    let mut escaped = false;
    let bytes = text.as_bytes();
    for (i, &c) in bytes.iter().enumerate() {
        if in_string {
            match (escaped, c) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match c {
            b'"' => in_string = true,
            b',' | b':' if bytes.get(i + 1) != Some(&b' ') => return false,
            _ => {}
        }
    }
    true
}

#[allow(unused_imports)] // each REST test target uses a different part
pub use crate::common::dns::{dnsmasq_binary, free_port, start_dnsmasq, Dnsmasq};

/// Containers' `generation` as stored (the restart counter; not part of the wire format).
pub async fn generation(b: &Berth, uid: i64) -> i64 {
    let (g,): (i64,) = sqlx::query_as("SELECT CAST(generation AS BIGINT) FROM containers WHERE id = $1")
        .bind(uid - 30000)
        .fetch_one(b.store().await.pool())
        .await
        .expect("generation");
    g
}

/// Two tenants: kratos owns server `owned` (containers `k1`, `k2`) and has `k3` on the
/// platform server; zeus owns server `zeus_server` (container `z2`) and has `z1` on the
/// platform server.
pub struct World {
    pub berth: Berth,
    pub kratos: crate::common::Customer,
    pub zeus: crate::common::Customer,
    pub k: Auth,
    pub z: Auth,
    pub owned: crate::common::Server,
    pub zeus_server: crate::common::Server,
    pub platform: crate::common::Server,
    pub k1: i64,
    pub k2: i64,
    pub k3: i64,
    pub z1: i64,
    pub z2: i64,
}

pub async fn world_on(berth: Berth) -> World {
    let kratos = berth.fixture_customer("kratos").await;
    let zeus = berth.fixture_customer("zeus").await;
    let owned = berth.fixture_server(Some("kratos")).await;
    let zeus_server = berth.fixture_server(Some("zeus")).await;
    let platform = berth.fixture_server(None).await;
    let k1 = berth.fixture_container("kratos", &owned.name, 500, 1000).await;
    let k2 = berth.fixture_container("kratos", &owned.name, 500, 1000).await;
    let k3 = berth.fixture_container("kratos", &platform.name, 500, 1000).await;
    let z1 = berth.fixture_container("zeus", &platform.name, 500, 1000).await;
    let z2 = berth.fixture_container("zeus", &zeus_server.name, 500, 1000).await;
    World { k: kratos.auth(), z: zeus.auth(), berth, kratos, zeus, owned, zeus_server, platform, k1, k2, k3, z1, z2 }
}

pub async fn world() -> World {
    world_on(Berth::start().await).await
}

/// A request without a body.
pub async fn send(b: &Berth, method: &str, path: &str, auth: &Auth) -> Reply {
    call(b, method, path, auth, None).await
}
