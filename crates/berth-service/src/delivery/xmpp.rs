//! The XMPP channel: a minimal client (RFC 6120/6121) that logs in as the container's `jid`
//! with `jid_secret` and sends one chat message to each of `jid_destinations`.
//!
//! Per delivery: TCP to the server (the operator's `--xmpp-server`, else the JID domain's
//! `_xmpp-client._tcp` SRV record, else the domain on port 5222), stream, STARTTLS when
//! offered (required unless the operator allowed plaintext), SASL PLAIN, resource binding,
//! the messages, and a clean stream close (the server's own close confirms it processed
//! what came before). Only the few elements this needs are understood; everything else the
//! server sends in between is skipped.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use base64::Engine as _;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::rustls;

use super::channels::{Channel, ChannelKind, Notification, SendError};

/// Operator settings for XMPP logins.
#[derive(Debug, Clone)]
pub struct XmppSettings {
    /// `host:port` to connect to instead of resolving the JID's domain.
    pub server: Option<String>,
    /// Log in without TLS when the server offers no STARTTLS.
    pub allow_plaintext: bool,
    /// Let a customer's XMPP server (the JID's domain or its SRV target, when no `server`
    /// is set) be a loopback, private or link-local address.
    pub allow_private: bool,
    /// Bound on the whole session.
    pub timeout: Duration,
}

/// One XMPP account sending to its destinations.
pub struct Xmpp {
    pub(crate) settings: XmppSettings,
    pub(crate) jid: String,
    pub(crate) password: String,
    pub(crate) destinations: Vec<String>,
}

#[async_trait]
impl Channel for Xmpp {
    fn kind(&self) -> ChannelKind {
        ChannelKind::Xmpp
    }

    fn target(&self) -> String {
        format!("{} -> {}", bare(&self.jid), self.destinations.join(","))
    }

    async fn send(&self, note: &Notification) -> Result<(), SendError> {
        // Session time plus the close handshake.
        match tokio::time::timeout(self.settings.timeout * 2, self.session(&note.text())).await {
            Ok(result) => result,
            Err(_) => Err(SendError::Transport("XMPP session timed out".to_owned())),
        }
    }
}

/// `local@domain` without the resource.
fn bare(jid: &str) -> &str {
    jid.split('/').next().unwrap_or(jid)
}

/// The address a JID's domain is written as (`10.0.0.5`, `[::1]`), if it is one.
pub(super) fn literal_address(jid: &str) -> Option<std::net::IpAddr> {
    split_jid(jid).ok().and_then(|(_, domain, _)| address_literal(domain))
}

fn address_literal(domain: &str) -> Option<std::net::IpAddr> {
    domain.strip_prefix('[').and_then(|d| d.strip_suffix(']')).unwrap_or(domain).parse().ok()
}

/// `(local, domain, resource)` of a JID; a JID for login needs a local part.
fn split_jid(jid: &str) -> Result<(&str, &str, Option<&str>), SendError> {
    let (bare, resource) = match jid.split_once('/') {
        Some((b, r)) => (b, Some(r).filter(|r| !r.is_empty())),
        None => (jid, None),
    };
    match bare.split_once('@') {
        Some((local, domain)) if !local.is_empty() && !domain.is_empty() && !domain.contains('@') => {
            Ok((local, domain, resource))
        }
        _ => Err(SendError::Rejected(format!("jid {jid:?} is not local@domain"))),
    }
}

/// XML text and attribute escaping.
pub(crate) fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            // Characters XML 1.0 cannot carry at all.
            c if (c as u32) < 0x20 && !matches!(c, '\t' | '\n' | '\r') => out.push('\u{fffd}'),
            c => out.push(c),
        }
    }
    out
}

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// What the stream reader yields.
#[derive(Debug, PartialEq, Eq)]
enum Piece {
    /// `<stream:stream …>` (the opening tag only).
    StreamOpen,
    /// `</stream:stream>`.
    StreamClose,
    /// A complete top-level element, as raw XML.
    Element(String),
}

/// Finds the next piece in `buf`: `Some((piece, bytes consumed))`, `None` when more input is
/// needed. Declarations, comments and whitespace between elements are skipped.
fn next_piece(buf: &[u8]) -> Option<(Option<Piece>, usize)> {
    let mut depth = 0usize;
    let mut start = 0usize;
    let mut i = 0usize;
    loop {
        let lt = i + buf[i..].iter().position(|&b| b == b'<')?;
        // The end of the tag, skipping `>` inside quoted attribute values.
        let mut quote = None;
        let mut gt = None;
        for (k, &b) in buf[lt..].iter().enumerate() {
            match (quote, b) {
                (None, b'"' | b'\'') => quote = Some(b),
                (Some(q), b) if b == q => quote = None,
                (None, b'>') => {
                    gt = Some(lt + k);
                    break;
                }
                _ => {}
            }
        }
        let gt = gt?;
        let tag = &buf[lt..=gt];
        if depth == 0 {
            start = lt;
        }
        if tag.starts_with(b"<?") || tag.starts_with(b"<!") {
            if depth == 0 {
                return Some((None, gt + 1));
            }
        } else if tag.starts_with(b"</") {
            if depth == 0 {
                return Some((Some(Piece::StreamClose), gt + 1));
            }
            depth -= 1;
            if depth == 0 {
                let raw = String::from_utf8_lossy(&buf[start..=gt]).into_owned();
                return Some((Some(Piece::Element(raw)), gt + 1));
            }
        } else if tag.ends_with(b"/>") {
            if depth == 0 {
                let raw = String::from_utf8_lossy(tag).into_owned();
                return Some((Some(Piece::Element(raw)), gt + 1));
            }
        } else if depth == 0 && tag.starts_with(b"<stream:stream") {
            return Some((Some(Piece::StreamOpen), gt + 1));
        } else {
            depth += 1;
        }
        i = gt + 1;
    }
}

/// The local part of an element's name: `stream:features` → `features`.
fn element_name(raw: &str) -> &str {
    let name = raw
        .trim_start_matches('<')
        .split(|c: char| c.is_whitespace() || c == '>' || c == '/')
        .next()
        .unwrap_or_default();
    name.rsplit(':').next().unwrap_or(name)
}

struct Conn {
    io: Box<dyn Io>,
    buf: Vec<u8>,
}

impl Conn {
    async fn write(&mut self, xml: &str) -> Result<(), SendError> {
        self.io.write_all(xml.as_bytes()).await.map_err(transport)?;
        self.io.flush().await.map_err(transport)
    }

    async fn next(&mut self) -> Result<Piece, SendError> {
        loop {
            while let Some((piece, used)) = next_piece(&self.buf) {
                self.buf.drain(..used);
                if let Some(piece) = piece {
                    if let Piece::Element(raw) = &piece {
                        if element_name(raw) == "error" && raw.starts_with("<stream:error") {
                            return Err(SendError::Transport(format!("XMPP stream error: {}", brief(raw))));
                        }
                    }
                    return Ok(piece);
                }
            }
            if self.buf.len() > 1 << 20 {
                return Err(SendError::Transport("XMPP element too large".to_owned()));
            }
            let mut chunk = [0u8; 4096];
            let n = self.io.read(&mut chunk).await.map_err(transport)?;
            if n == 0 {
                return Err(SendError::Transport("XMPP server closed the connection".to_owned()));
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    /// The next complete element (stream close is an error here).
    async fn element(&mut self) -> Result<String, SendError> {
        match self.next().await? {
            Piece::Element(raw) => Ok(raw),
            Piece::StreamOpen => Err(SendError::Transport("unexpected XMPP stream header".to_owned())),
            Piece::StreamClose => Err(SendError::Transport("XMPP server closed the stream".to_owned())),
        }
    }

    /// Opens a stream to `domain` and returns the server's `<stream:features>`.
    async fn open_stream(&mut self, domain: &str) -> Result<String, SendError> {
        self.write(&format!(
            "<?xml version='1.0'?><stream:stream to='{}' version='1.0' xml:lang='en' \
             xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>",
            escape(domain)
        ))
        .await?;
        match self.next().await? {
            Piece::StreamOpen => {}
            other => return Err(SendError::Transport(format!("expected an XMPP stream header, got {other:?}"))),
        }
        let features = self.element().await?;
        if element_name(&features) != "features" {
            return Err(SendError::Transport(format!("expected stream features, got {}", brief(&features))));
        }
        Ok(features)
    }
}

fn transport(e: std::io::Error) -> SendError {
    SendError::Transport(format!("XMPP: {e}"))
}

/// The start of an element, for error messages.
fn brief(raw: &str) -> String {
    raw.chars().take(200).collect()
}

fn tls_config() -> Arc<rustls::ClientConfig> {
    let roots = rustls::RootCertStore { roots: webpki_roots::TLS_SERVER_ROOTS.to_vec() };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("ring supports the default protocol versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    Arc::new(config)
}

impl Xmpp {
    /// Where to connect: the operator's server, the SRV target, or the domain on 5222 (an
    /// address literal has no SRV record to look up).
    async fn address(&self, domain: &str) -> String {
        if let Some(server) = &self.settings.server {
            return server.clone();
        }
        if address_literal(domain).is_some() {
            return format!("{domain}:5222");
        }
        if let Ok(resolver) = hickory_resolver::TokioResolver::builder_tokio().map(|b| b.build()) {
            if let Ok(srv) = resolver.srv_lookup(format!("_xmpp-client._tcp.{domain}.")).await {
                if let Some(best) = srv.iter().min_by_key(|r| (r.priority(), u16::MAX - r.weight())) {
                    let target = best.target().to_utf8();
                    let target = target.trim_end_matches('.');
                    if !target.is_empty() {
                        return format!("{target}:{}", best.port());
                    }
                }
            }
        }
        format!("{domain}:5222")
    }

    /// Connects to `address`. The operator's `--xmpp-server` is trusted; a server the
    /// customer chose (its JID's domain, or that domain's SRV target) must resolve to public
    /// addresses only, as customer URLs must ([`super::ssrf`]), unless private ones are
    /// allowed: otherwise a JID could make the gateway open connections inside the
    /// operator's network.
    async fn connect(&self, address: &str) -> Result<TcpStream, SendError> {
        let failed = |e: std::io::Error| SendError::Transport(format!("XMPP connect to {address}: {e}"));
        if self.settings.server.is_some() || self.settings.allow_private {
            return TcpStream::connect(address).await.map_err(failed);
        }
        let (host, port) = address
            .rsplit_once(':')
            .and_then(|(host, port)| Some((host.trim_start_matches('[').trim_end_matches(']'), port.parse().ok()?)))
            .ok_or_else(|| SendError::Rejected(format!("XMPP server {address:?} is not host:port")))?;
        match super::ssrf::resolve_public(host, port).await.map_err(failed)? {
            Ok(addrs) => TcpStream::connect(addrs.as_slice()).await.map_err(failed),
            Err(refused) => Err(SendError::Refused(format!("XMPP server {address}: {}", refused.0))),
        }
    }

    async fn session(&self, text: &str) -> Result<(), SendError> {
        let (local, domain, resource) = split_jid(&self.jid)?;
        let address = self.address(domain).await;
        let tcp = tokio::time::timeout(self.settings.timeout, self.connect(&address))
            .await
            .map_err(|_| SendError::Transport(format!("XMPP connect to {address} timed out")))??;
        let mut conn = Conn { io: Box::new(tcp), buf: Vec::new() };
        let mut features = conn.open_stream(domain).await?;
        if features.contains("<starttls") {
            conn.write("<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>").await?;
            let answer = conn.element().await?;
            if element_name(&answer) != "proceed" {
                return Err(SendError::Transport(format!("STARTTLS refused: {}", brief(&answer))));
            }
            let name = rustls::pki_types::ServerName::try_from(domain.to_owned())
                .map_err(|e| SendError::Rejected(format!("bad XMPP domain {domain:?}: {e}")))?;
            let Conn { io, .. } = conn;
            let tls = tokio_rustls::TlsConnector::from(tls_config())
                .connect(name, io)
                .await
                .map_err(|e| SendError::Transport(format!("XMPP TLS: {e}")))?;
            conn = Conn { io: Box::new(tls), buf: Vec::new() };
            features = conn.open_stream(domain).await?;
        } else if !self.settings.allow_plaintext {
            return Err(SendError::Refused(format!("{address} offers no STARTTLS; not sending the password in clear")));
        }
        if !features.contains(">PLAIN<") {
            return Err(SendError::Rejected("the XMPP server offers no SASL PLAIN".to_owned()));
        }
        let credentials = base64::engine::general_purpose::STANDARD.encode(format!("\0{local}\0{}", self.password));
        conn.write(&format!("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>{credentials}</auth>"))
            .await?;
        let answer = conn.element().await?;
        match element_name(&answer) {
            "success" => {}
            "failure" => {
                return Err(SendError::Rejected("XMPP authentication failed (check jid/jid_secret)".to_owned()))
            }
            _ => return Err(SendError::Transport(format!("unexpected SASL answer: {}", brief(&answer)))),
        }
        conn.buf.clear();
        let features = conn.open_stream(domain).await?;
        let resource = resource.unwrap_or("berth");
        conn.write(&format!(
            "<iq type='set' id='bind1'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><resource>{}</resource></bind></iq>",
            escape(resource)
        ))
        .await?;
        wait_result(&mut conn, "bind1").await?;
        // RFC 3921 sessions, for old servers that still require them.
        if features.contains("urn:ietf:params:xml:ns:xmpp-session") && !features.contains("<optional") {
            conn.write("<iq type='set' id='sess1'><session xmlns='urn:ietf:params:xml:ns:xmpp-session'/></iq>").await?;
            wait_result(&mut conn, "sess1").await?;
        }
        let body = escape(text);
        for (n, to) in self.destinations.iter().enumerate() {
            conn.write(&format!(
                "<message type='chat' to='{}' id='berth-{n}'><body>{body}</body></message>",
                escape(to)
            ))
            .await?;
        }
        conn.write("</stream:stream>").await?;
        // The server closes its stream after handling everything we sent before ours.
        loop {
            match conn.next().await {
                Ok(Piece::StreamClose) => break,
                Ok(Piece::Element(raw))
                    if element_name(&raw) == "message"
                        && (raw.contains("type='error'") || raw.contains("type=\"error\"")) =>
                {
                    tracing::warn!(jid = bare(&self.jid), error = %brief(&raw), "XMPP message bounced");
                }
                Ok(_) => {}
                // Some servers just drop the connection; the messages went before.
                Err(_) => break,
            }
        }
        Ok(())
    }
}

/// Waits for the `result` of iq `id`; an `error` answer fails.
async fn wait_result(conn: &mut Conn, id: &str) -> Result<(), SendError> {
    let single = format!("id='{id}'");
    let double = format!("id=\"{id}\"");
    loop {
        let raw = conn.element().await?;
        if element_name(&raw) == "iq" && (raw.contains(&single) || raw.contains(&double)) {
            if raw.contains("type='result'") || raw.contains("type=\"result\"") {
                return Ok(());
            }
            return Err(SendError::Rejected(format!("XMPP {id} failed: {}", brief(&raw))));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn customer_account(jid: &str, allow_private: bool) -> Xmpp {
        Xmpp {
            settings: XmppSettings {
                server: None,
                allow_plaintext: false,
                allow_private,
                timeout: Duration::from_secs(5),
            },
            jid: jid.to_owned(),
            password: "secret".to_owned(),
            destinations: vec!["ops@example.com".to_owned()],
        }
    }

    #[tokio::test]
    async fn a_customer_server_at_a_private_address_is_refused_unconnected() {
        for jid in ["kratos@127.0.0.1", "kratos@10.1.2.3/laptop", "kratos@169.254.169.254"] {
            match customer_account(jid, false).session("alarm").await {
                Err(SendError::Refused(why)) => assert!(why.contains("private address"), "{why}"),
                other => panic!("{jid}: expected a refusal, got {other:?}"),
            }
        }
    }

    #[tokio::test]
    async fn the_operator_may_allow_private_servers() {
        // The test's own listener; allowed, the gateway connects to it.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap().to_string();
        let accepted = tokio::spawn(async move { listener.accept().await.is_ok() });
        let refused = customer_account("kratos@127.0.0.1", false).connect(&address).await;
        assert!(matches!(refused, Err(SendError::Refused(_))), "{refused:?}");
        customer_account("kratos@127.0.0.1", true).connect(&address).await.expect("allowed: connected");
        assert!(accepted.await.unwrap(), "the listener saw the connection");
    }

    #[test]
    fn address_literals_in_jids() {
        assert_eq!(literal_address("kratos@10.0.0.5/laptop"), Some([10, 0, 0, 5].into()));
        assert_eq!(literal_address("kratos@[::1]"), Some(std::net::Ipv6Addr::LOCALHOST.into()));
        assert_eq!(literal_address("kratos@jabber.example.com"), None);
        assert_eq!(literal_address("no-local-part"), None);
    }

    #[test]
    fn splits_stream_pieces() {
        let input = b"<?xml version='1.0'?><stream:stream xmlns='jabber:client' id='a>b'>\
            <stream:features><mechanisms><mechanism>PLAIN</mechanism></mechanisms><x/></stream:features>\
            <success xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/></stream:stream>";
        let mut buf = input.to_vec();
        let mut pieces = Vec::new();
        while let Some((piece, used)) = next_piece(&buf) {
            buf.drain(..used);
            if let Some(p) = piece {
                pieces.push(p);
            }
        }
        assert!(buf.is_empty());
        assert_eq!(pieces.len(), 4, "{pieces:?}");
        assert_eq!(pieces[0], Piece::StreamOpen);
        match &pieces[1] {
            Piece::Element(raw) => {
                assert_eq!(element_name(raw), "features");
                assert!(raw.contains(">PLAIN<"));
            }
            other => panic!("{other:?}"),
        }
        match &pieces[2] {
            Piece::Element(raw) => assert_eq!(element_name(raw), "success"),
            other => panic!("{other:?}"),
        }
        assert_eq!(pieces[3], Piece::StreamClose);
        // Incomplete input asks for more.
        assert!(next_piece(b"<stream:features><a>").is_none());
        assert!(next_piece(b"<iq id='x").is_none());
    }

    #[test]
    fn jids_and_escaping() {
        assert_eq!(split_jid("a@b/c").unwrap(), ("a", "b", Some("c")));
        assert_eq!(split_jid("a@b").unwrap(), ("a", "b", None));
        assert!(split_jid("b").is_err());
        assert!(split_jid("@b").is_err());
        assert_eq!(escape("<a href='x'>&\"\u{1}"), "&lt;a href=&apos;x&apos;&gt;&amp;&quot;\u{fffd}");
    }
}
