//! Opaque Relay cursors: base64 of the row id, so clients cannot rely on their shape.

use async_graphql::connection::CursorType;
use base64::Engine as _;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdCursor(pub i64);

impl CursorType for IdCursor {
    type Error = String;

    fn decode_cursor(s: &str) -> Result<Self, Self::Error> {
        let bytes =
            base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(s).map_err(|_| "malformed cursor".to_owned())?;
        let text = String::from_utf8(bytes).map_err(|_| "malformed cursor".to_owned())?;
        text.strip_prefix("id:")
            .and_then(|id| id.parse().ok())
            .map(IdCursor)
            .ok_or_else(|| "malformed cursor".to_owned())
    }

    fn encode_cursor(&self) -> String {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!("id:{}", self.0))
    }
}
